"""segcli prepare: native dataset → canonical layout + dataset card."""

from __future__ import annotations

from pathlib import Path

from segcli.console import info, result
from segcli.data.card import DatasetCard
from segcli.errors import ConfigError


def run(cfg) -> DatasetCard:
    """Convert the dataset that `cfg.format` names; print the card's path on stdout."""
    from segcli.data.layout import write_dataset

    if not cfg.out:
        raise ConfigError("no output directory; pass --out DIR")
    fmt = cfg.format
    if fmt == "synthetic":
        from segcli.data.formats import synthetic
        from segcli.data.layout import Sample

        n = int(cfg.synthetic.num_images)
        if n < 2:
            raise ConfigError(f"--num-images {n}: need at least 2 (train and val)")
        num_val = max(1, n // 5)

        def scenes():
            for i, (stem, image, mask) in enumerate(synthetic.generate(n, cfg.seed, cfg.synthetic.height, cfg.synthetic.width)):
                yield Sample("val" if i >= n - num_val else "train", stem, image, mask)

        args = dict(name="synthetic", classes=synthetic.CLASSES, palette=synthetic.PALETTE,
                    ignore_index=synthetic.IGNORE_INDEX, samples=scenes())
    elif fmt == "camvid":
        from segcli.data.formats import camvid

        if not cfg.src:
            raise ConfigError("camvid needs --src DIR (the SegNet-layout CamVid folder)")
        args = dict(name="camvid", classes=camvid.CLASSES, palette=camvid.PALETTE, ignore_index=camvid.IGNORE_INDEX,
                    samples=camvid.samples(cfg.src), label_map=camvid.label_map)
    elif fmt == "folder":
        from segcli.data.formats import folder

        if not cfg.images or not cfg.masks:
            raise ConfigError("folder needs --images DIR and --masks DIR")
        pairs = folder.collect(cfg.images, cfg.masks, float(cfg.val_fraction), int(cfg.seed))
        classes = folder.parse_classes(cfg.classes, [] if cfg.classes else folder.ids_found(pairs, int(cfg.ignore_index)))
        args = dict(name=Path(cfg.out).name, classes=classes, palette=folder.default_palette(len(classes)),
                    ignore_index=int(cfg.ignore_index), samples=pairs)
    else:
        raise ConfigError(f"unknown dataset format '{fmt}'; choose from synthetic, camvid, folder")

    count = [0]

    def progress(_sample) -> None:
        count[0] += 1
        if count[0] % 100 == 0:
            info(f"prepare: {count[0]} pairs written")

    card = write_dataset(cfg.out, overwrite=bool(cfg.overwrite), progress=progress, **args)
    sizes = ", ".join(f"{split} {len(items)}" for split, items in card.splits.items())
    info(f"prepare: {card.name}: {card.num_classes} classes, {sizes} → {card.root}")
    result(str(card.root / "dataset.yaml"))
    return card
