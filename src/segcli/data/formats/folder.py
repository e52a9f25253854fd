"""A plain pair of folders: images/ and masks/, matched by relative stem.

Nested folders are allowed (`a/b/x.jpg` pairs with `a/b/x.png`). Masks hold class ids (8/16-bit PNG,
palette-mode PNGs are read as their indices), or RGB colours mapped through `--palette FILE`.
Splits come from split lists (`--split-file train=FILE ...`) or a seeded random split; `--folds K`
adds a k-fold assignment of the train split.
"""

from __future__ import annotations

from pathlib import Path

from segcli.data.lint import Finding, error
from segcli.data.masks import MaskDecoder
from segcli.data.palette import ColourMap, parse_palette
from segcli.data.source import Sample, Source
from segcli.data.splits import assign_folds, from_lists, group_keys, group_leaks, random_split, read_split_list
from segcli.errors import ConfigError, DataError
from segcli.inference.io import list_images, read_lines

DEFAULT_IGNORE = 255


def _by_stem(root: Path, kind: str, findings: list[Finding]) -> dict[str, Path]:
    """relative stem → file; stems held by two files are reported and left out (the pair would be ambiguous)."""
    if not root.is_dir():
        raise DataError(f"{root}: {kind} folder not found; check --{kind}")
    found: dict[str, list[Path]] = {}
    for path in list_images(root):
        found.setdefault(path.relative_to(root).with_suffix("").as_posix(), []).append(path)
    if not found:
        raise DataError(f"{root}: no images found in the {kind} folder")
    for stem, paths in found.items():
        if len(paths) > 1:
            findings.append(error("duplicate_stem", str(paths[1]), f"{kind[:-1]} stem '{stem}' is held by "
                                  f"{', '.join(p.name for p in paths)}; keep one file per stem", stem=stem))
    return {stem: paths[0] for stem, paths in found.items() if len(paths) == 1}


def parse_classes(spec: str | None) -> list[str] | None:
    """'a,b,c' or a file with one name per line; None stays None (names come from the ids found)."""
    if spec is None:
        return None
    path = Path(spec)
    names = read_lines(path, "class list") if path.is_file() else str(spec).split(",")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ConfigError(f"--classes {spec!r} names no classes; give 'a,b,c' or a file with one name per line")
    if len(set(names)) != len(names):
        raise ConfigError(f"--classes {spec!r}: a class name is repeated")
    return names


def default_palette(num_classes: int) -> list[list[int]]:
    """Distinct, deterministic colours (the PASCAL VOC bit-interleaving scheme)."""
    palette = []
    for i in range(num_classes):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append([r, g, b])
    return palette


def parse_remap(remap: dict | None) -> dict[int, int]:
    """{255: 1} or {'255': '1'} → {255: 1}."""
    try:
        return {int(k): int(v) for k, v in (remap or {}).items()}
    except (TypeError, ValueError):
        raise ConfigError(f"remap {remap}: give integer pairs, e.g. --remap 255=1") from None


def _splits(stems: list[str], split_files: dict | None, val_fraction: float, test_fraction: float, seed: int,
            findings: list[Finding], groups: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """stem → split, and the splits that must not end up empty."""
    if split_files:
        lists = {str(split): read_split_list(path) for split, path in split_files.items()}
        assigned, list_findings = from_lists(stems, lists, {str(k): str(v) for k, v in split_files.items()})
        findings.extend(list_findings)
        if groups is not None:
            findings.extend(group_leaks(assigned, groups))
        return assigned, list(lists)
    assigned = random_split(stems, val_fraction, test_fraction, seed, groups)
    expected = ["train"] + [name for name, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
    return assigned, expected


def collect(images: str | Path, masks: str | Path, *, name: str, classes: str | None = None, palette: str | None = None,
            ignore_index: int | None = None, remap: dict | None = None, split_files: dict | None = None,
            val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0, folds: int | None = None,
            group: str | None = None) -> Source:
    """Pair the files, assign splits and folds (keeping each --group whole), and describe how masks decode."""
    findings: list[Finding] = []
    image_map = _by_stem(Path(images), "images", findings)
    mask_map = _by_stem(Path(masks), "masks", findings)
    ambiguous = {f.stem for f in findings}  # duplicate stems: already reported, their counterparts are not orphans
    image_map = {s: p for s, p in image_map.items() if s not in ambiguous}
    mask_map = {s: p for s, p in mask_map.items() if s not in ambiguous}
    for stem in sorted(set(image_map) - set(mask_map)):
        findings.append(error("missing_mask", str(image_map[stem]), f"no mask with stem '{stem}' in {masks}", stem=stem))
    for stem in sorted(set(mask_map) - set(image_map)):
        findings.append(error("missing_image", str(mask_map[stem]), f"no image with stem '{stem}' in {images}", stem=stem))
    stems = sorted(set(image_map) & set(mask_map))

    names = parse_classes(classes)
    colours = None
    ignore = DEFAULT_IGNORE if ignore_index is None else int(ignore_index)
    palette_colours: list[list[int]] = []
    if palette:
        table = parse_palette(palette)
        if names is not None and len(names) != len(table.classes):
            raise ConfigError(f"--classes names {len(names)} classes but --palette {palette} has {len(table.classes)}")
        names = names or table.classes
        palette_colours = table.colours
        colours = ColourMap(table.colours, table.ignore_colours, ignore)
    if names is not None and ignore < len(names):
        raise ConfigError(f"--ignore-index {ignore} is also the id of class '{names[ignore]}'; pick a value >= {len(names)}")
    decoder = MaskDecoder(num_classes=None if names is None else len(names), ignore_index=ignore, colours=colours,
                          ignore_declared=ignore_index is not None, remap=parse_remap(remap))

    groups = group_keys(stems, str(group)) if group else None
    assigned, expected = _splits(stems, split_files, float(val_fraction), float(test_fraction), int(seed), findings,
                                 groups)
    fold_of = {}
    if folds:
        fold_of = assign_folds([s for s in stems if assigned.get(s) == "train"], int(folds), int(seed), groups)
    samples = [Sample(split=assigned[s], stem=s, image=image_map[s], mask=mask_map[s], fold=fold_of.get(s),
                      group=groups[s] if groups else None)
               for s in stems if s in assigned]
    palette_out = palette_colours or default_palette(len(names) if names else 256)
    return Source(name=name, classes=names, palette=palette_out, ignore_index=ignore, samples=samples,
                  decoder=decoder, splits=expected, findings=findings)
