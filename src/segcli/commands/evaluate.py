"""segcli eval: score a model on a prepared split through the shared predictor."""

from __future__ import annotations

from pathlib import Path

from segcli.console import info, stdout_console
from segcli.errors import ConfigError


def evaluate_split(predictor, card, split: str) -> tuple[dict, int]:
    """Accumulate the confusion matrix of `predictor` over a split → (metrics dict, number of images)."""
    import torch

    from segcli.inference.io import read_image, read_mask
    from segcli.metrics import ConfusionMatrix, compute_metrics

    if list(predictor.classes) != list(card.classes):
        raise ConfigError(f"{card.root / 'dataset.yaml'}: its classes {card.classes} differ from the model's {predictor.classes}; "
                          "evaluate on the dataset the model was trained for")
    pairs = card.pairs(split)
    cm = ConfusionMatrix(card.num_classes, card.ignore_index)
    masks = {}

    def images():
        for image_path, mask_path in pairs:
            masks[image_path] = mask_path
            yield image_path, read_image(image_path)

    for image_path, _image, pred in predictor.predict_stream(images()):
        target = read_mask(masks.pop(image_path))
        cm.update(torch.from_numpy(pred.astype("int64")), torch.from_numpy(target.astype("int64")))
    return compute_metrics(cm.matrix, card.classes), len(pairs)


def run(cfg) -> dict:
    from segcli.data.card import load_card
    from segcli.inference.backends import load_predictor
    from segcli.inference.io import atomic_write_bytes
    from segcli.reports import metrics_table, report_json

    if not cfg.ckpt:
        raise ConfigError("no model given; pass --ckpt RUN_DIR/checkpoints/best.ckpt")
    predictor = load_predictor(cfg.ckpt, cfg.device, cfg.inference.batch_size)
    root = cfg.data or predictor.meta.get("dataset", {}).get("root")
    if not root:
        raise ConfigError(f"{cfg.ckpt}: the model names no dataset; pass --data DIR")
    card = load_card(root)
    metrics, count = evaluate_split(predictor, card, cfg.split)
    report = report_json(metrics, cfg.split, count, extra={"model": str(Path(cfg.ckpt).resolve()), "data": str(card.root)})
    if cfg.json == "-":
        print(report, end="")
    else:
        stdout_console().print(metrics_table(metrics, title=f"{card.name} / {cfg.split}: {count} images"))
        if cfg.json:
            atomic_write_bytes(cfg.json, report.encode("utf-8"))
            info(f"eval: report written to {cfg.json}")
    return metrics
