"""segcli predict: class-id masks (and colour overlays) for image files and folders of any size."""

from __future__ import annotations

from pathlib import Path

from segcli.console import info, result
from segcli.errors import ConfigError, DataError


def collect_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(image path, output-relative path without suffix) for each input image; folders are searched recursively."""
    from segcli.inference.io import list_images

    items: list[tuple[Path, Path]] = []
    for entry in inputs:
        root = Path(entry)
        if not root.exists():
            raise DataError(f"{root}: input not found; pass image files or folders")
        if root.is_file():
            items.append((root, Path(root.stem)))
            continue
        found = list_images(root)
        if not found:
            raise DataError(f"{root}: no images found in this folder")
        items.extend((path, path.relative_to(root).with_suffix("")) for path in found)
    seen: dict[Path, Path] = {}
    for path, rel in items:
        if rel in seen:
            raise ConfigError(f"{path} and {seen[rel]} would both write {rel}.png; predict them into separate --out folders")
        seen[rel] = path
    return items


def run(cfg) -> list[Path]:
    from segcli.inference.backends import load_predictor
    from segcli.inference.io import overlay, read_image, write_png

    if cfg.ckpt and cfg.model:
        raise ConfigError("both --ckpt and --model given; pass one of them")
    model = cfg.model or cfg.ckpt
    if not model:
        raise ConfigError("no model given; pass --ckpt RUN_DIR/checkpoints/best.ckpt or --model FILE.onnx|FILE.pt")
    if not cfg.out:
        raise ConfigError("no output directory; pass --out DIR")
    if not cfg.inputs:
        raise ConfigError("no inputs; pass image files or folders")
    items = collect_inputs(list(cfg.inputs))
    predictor = load_predictor(model, cfg.device, cfg.inference.batch_size).configure(cfg.inference)  # whole/slide, TTA
    out = Path(cfg.out)
    written = []

    def images():
        for path, rel in items:
            yield (path, rel), read_image(path)

    for (path, rel), image, mask in predictor.predict_stream(images()):
        mask_path = out / rel.with_suffix(".png")
        write_png(mask_path, mask)
        if cfg.overlay:
            write_png(out / "overlays" / rel.with_suffix(".png"),
                      overlay(image, mask, predictor.palette, predictor.ignore_index, float(cfg.alpha)))
        written.append(mask_path)
        result(str(mask_path))
    info(f"predict: {len(written)} masks written to {out}" + (f", overlays under {out / 'overlays'}" if cfg.overlay else ""))
    return written
