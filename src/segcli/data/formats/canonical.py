"""A dataset already in segcli's canonical layout (DIR/dataset.yaml), as a Source for `prepare lint DIR`.

Entries keep their fold and group; a group whose pairs sit in more than one split is a `group_leak` warning,
as when `prepare folder --group` reads split files.
"""

from __future__ import annotations

from pathlib import Path

from segcli.data.card import DatasetCard, load_card
from segcli.data.lint import error
from segcli.data.masks import MaskDecoder
from segcli.data.source import Sample, Source
from segcli.data.splits import group_leaks


def collect(root: str | Path, card: DatasetCard | None = None) -> Source:
    """The card's pairs (`card`: root's card, when the caller has read it); missing files and pairs listed twice
    become findings."""
    card = card or load_card(root)  # a download not prepared yet: its error says which command prepares it
    samples, findings = [], []
    owner: dict[str, str] = {}
    groups: dict[str, str] = {}  # image path → group, for the entries that carry one
    for split, entries in card.splits.items():
        for entry in entries:
            image, mask = card.root / entry["image"], card.root / entry["mask"]
            stem = Path(entry["image"]).relative_to("images", split).with_suffix("").as_posix() \
                if entry["image"].startswith(f"images/{split}/") else Path(entry["image"]).stem
            where = dict(split=split, stem=stem)
            if entry["image"] in owner:
                first = owner[entry["image"]]
                kind, detail = (("duplicate_stem", f"listed twice in split '{split}'") if first == split else
                                ("split_overlap", f"listed in split '{first}' and again in '{split}'; a pair belongs "
                                 "to one split"))
                findings.append(error(kind, str(image), detail, **where))
                continue
            owner[entry["image"]] = split
            if entry.get("group") is not None:
                groups[entry["image"]] = str(entry["group"])
            if not image.is_file():
                findings.append(error("missing_image", str(mask), f"its image {image} does not exist", **where))
            elif not mask.is_file():
                findings.append(error("missing_mask", str(image), f"its mask {mask} does not exist", **where))
            else:
                samples.append(Sample(split=split, stem=stem, image=image, mask=mask, fold=entry.get("fold"),
                                      group=groups.get(entry["image"])))
    findings += group_leaks({image: owner[image] for image in groups}, groups)
    decoder = MaskDecoder(card.num_classes, card.ignore_index)
    return Source(name=card.name, classes=card.classes, palette=card.palette, ignore_index=card.ignore_index,
                  samples=samples, decoder=decoder, splits=list(card.splits), findings=findings)
