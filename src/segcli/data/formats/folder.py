"""A plain pair of folders: images/ and masks/, matched by relative stem.

Nested folders are allowed (`a/b/x.jpg` pairs with `a/b/x.png`); `--mask-suffix _mask` pairs `x.jpg` with
`x_mask.png` (and `--image-suffix _sat` `x_sat.jpg` with it: files without the suffix are then not images or
masks, so both may share one folder). When pairing fails, the error suggests suffixes that would pair the names
it sees (the pairing and its hints: pairing.py). Masks hold class ids (8/16-bit PNG,
palette-mode PNGs are read as their indices), or RGB colours mapped through `--palette FILE` (a palette-mode PNG
then by its colours).
`--images DIR --masks DIR` on one folder holding images/ and masks/ (labels/, annotations/) side by side pairs
`train/images/x.jpg` with `train/masks/x.png` as stem `train/x` (prepared as images/train/x when train/ is a split
folder).
Splits come from split lists (`--split-file train=FILE ...`), split folders (`train/`, `val/`, `test/` at the top of
the stems, when no fraction is given) or a seeded random split; `--folds K` adds a k-fold assignment of the train split.
`--classes` also reads a CSV of ids and names (Roboflow's `_classes.csv`) and nnU-Net's dataset.json.
"""

from __future__ import annotations

from pathlib import Path

from segcli.data.class_table import read_class_table
from segcli.data.lint import Finding, error
from segcli.data.masks import MaskDecoder
from segcli.data.palette import ColourMap, parse_palette
from segcli.data.source import Sample, Source
from segcli.data.formats.pairing import (folder_pair_hint, folders_of, role_folders, sibling_folders, sibling_key,
                                         suffix_hint, unlabelled_folders, without, without_extension)
from segcli.data.splits import (DEFAULT_VAL_FRACTION, assign_folds, folder_splits, from_lists, group_keys, group_leaks,
                                 random_split, read_split_list, split_folders)
from segcli.errors import ConfigError, DataError
from segcli.inference.io import list_images

DEFAULT_IGNORE = 255


def _outside_prepared(root: Path, images: list[Path]) -> list[Path]:
    """`images` less those in a dataset that prepare wrote under `root` (a folder holding its card): an --out inside
    the source folder (`--images DIR --masks DIR --out DIR/prepared`) is not source; read as such, a second prepare
    took its images/ and masks/ for more pairs, and its chart for an image without a mask. A note names it."""
    from segcli.console import info
    from segcli.data.card import CARD_NAME

    folders: set[Path] = set()
    for folder in {path.parent for path in images}:
        while folder != root and folder not in folders and root in folder.parents:
            folders.add(folder)
            folder = folder.parent
    prepared = {folder for folder in folders if (folder / CARD_NAME).is_file()}
    if not prepared:
        return images
    info(f"prepare: note: left out {', '.join(str(f) for f in sorted(prepared))}: a prepared dataset ({CARD_NAME}), "
         "not source")
    return [path for path in images if not prepared.intersection(path.parents)]


def _by_stem(root: Path, kind: str, findings: list[Finding], suffix: str = "") -> dict[str, Path]:
    """relative stem (less `suffix`; files without it are left out) → file; stems held by two files are reported
    and left out (the pair would be ambiguous)."""
    if not root.is_dir():
        raise DataError(f"{root}: {kind} folder not found; check --{kind}")
    found: dict[str, list[Path]] = {}
    images = _outside_prepared(root, list_images(root))
    for path in images:
        stem = path.relative_to(root).with_suffix("").as_posix()
        if suffix:
            stem = without(stem, suffix)
            if stem is None:
                continue
        found.setdefault(stem, []).append(path)
    if not found and images:  # images, but none with the suffix: the suffix is what is wrong
        raise DataError(f"{root}: none of its {len(images)} image(s) has a name ending in '{suffix}' (e.g. "
                        f"{images[0].name}); check --{kind[:-1]}-suffix")
    if not found:
        raise DataError(f"{root}: no images found in the {kind} folder{_not_images(root, kind)}")
    for stem, paths in found.items():
        if len(paths) > 1:
            findings.append(error("duplicate_stem", str(paths[1]), f"{kind[:-1]} stem '{stem}' is held by "
                                  f"{', '.join(p.name for p in paths)}; keep one file per stem", stem=stem))
    return {stem: paths[0] for stem, paths in found.items() if len(paths) == 1}


ARRAY_FILES = {".npy": "np.load(f)", ".npz": "np.load(f)[name]"}  # arrays users save masks in, and how they load


def _not_images(root: Path, kind: str, limit: int = 10000) -> str:
    """'; it holds 6 .npy file(s), which are not images: …' when a folder without images holds other files (NumPy
    arrays, NIfTI volumes, annotation JSON), saying what segcli reads instead; '' when it holds none. Looks at up to
    `limit` files."""
    import os

    from segcli.inference.io import IMAGE_EXTENSIONS

    counts: dict[str, int] = {}
    seen = 0
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            suffix = "".join(Path(name).suffixes[-2:]).lower() if name.lower().endswith(".gz") else Path(name).suffix.lower()
            counts[suffix or "(no extension)"] = counts.get(suffix or "(no extension)", 0) + 1
            seen += 1
        if seen >= limit:
            break
    if not counts:
        return ""
    common = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:3]
    held = ", ".join(f"{n} {ext} file(s)" for ext, n in common)
    readable = " ".join(sorted(IMAGE_EXTENSIONS))
    arrays = [ext for ext, _ in common if ext in ARRAY_FILES]
    if arrays:
        how = ("a single-channel PNG of class ids (8-bit, or 16-bit above 255 ids), e.g. cv2.imwrite(f[:-4] + "
               f"'.png', {ARRAY_FILES[arrays[0]]}.astype(np.uint8))" if kind == "masks" else "a PNG or TIFF")
        return (f"; it holds {held}, which are not images (segcli reads {readable}): save each array as {how}, "
                f"named like its {'image' if kind == 'masks' else 'mask'}")
    return f"; it holds {held}, which are not images (segcli reads {readable}): convert them to PNG or TIFF"


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
    """{255: 1} or {'255': '1'} → {255: 1}; both sides mask values 0..65535 (what a 16-bit mask can hold)."""
    try:
        pairs = {int(k): int(v) for k, v in (remap or {}).items()}
    except (TypeError, ValueError):
        raise ConfigError(f"remap {remap}: give integer pairs, e.g. --remap 255=1") from None
    for raw, target in pairs.items():
        if not (0 <= raw <= 65535 and 0 <= target <= 65535):
            raise ConfigError(f"--remap {raw}={target}: both sides must be mask values from 0 to 65535, e.g. --remap 255=1")
    return pairs


ZERO_LABEL_HINT = ("; if 0 marks unlabelled pixels and the classes are 1..N, pass --reduce-zero-label instead "
                   "(0 → ignore, k → k-1)")


def zero_label_remap(ignore: int, num_classes: int | None) -> dict[int, int]:
    """--reduce-zero-label as raw value → id: 0 → ignore, k → k - 1 for the classes' raw values 1..N (every 16-bit
    value while the classes are unknown); the ignore value itself stays ignore."""
    top = num_classes if num_classes is not None else 65535
    return {0: ignore, **{k: k - 1 for k in range(1, top + 1) if k != ignore}}


def check_remap(remap: dict[int, int], num_classes: int | None, ignore: int) -> None:
    """Each --remap target must be a class id or the ignore index (any value while the classes are unknown)."""
    for raw, target in remap.items():
        if num_classes is not None and target >= num_classes and target != ignore:
            raise ConfigError(f"--remap {raw}={target}: {target} is neither a class id 0..{num_classes - 1} nor the "
                              f"ignore index {ignore}; map {raw} to one of them, or name more classes with --classes")


def _threshold(value, palette) -> int | None:
    """--mask-threshold T as an int (None: not given)."""
    if value is None:
        return None
    if palette:
        raise ConfigError("--mask-threshold reads two-valued grey masks as 0/1; colour masks map through --palette "
                          "instead: give one of them")
    try:
        threshold = int(value)
    except (TypeError, ValueError):
        threshold = 0
    if not 1 <= threshold <= 65535 or str(threshold) != str(value).strip():
        raise ConfigError(f"--mask-threshold {value}: give a whole number 1..65535, e.g. 128 for 0/255 masks")
    return threshold


def _inside_split_folders(folders: dict[str, tuple[str, str]] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(stem → the stem inside its split folder, `train/seq1/x` → `seq1/x`, which --group is matched against;
    stem → the stem it is prepared under) for the pairs that split folders split: images/train/seq1/x, not
    images/train/train/seq1/x. A split made of two folders (train/ and training/) is prepared under whole stems, as
    the same name may sit in both."""
    if not folders:
        return {}, {}
    sources: dict[str, set[str]] = {}
    for split, folder in folders.values():
        sources.setdefault(split, set()).add(folder)
    inside = {stem: stem[len(folder):] for stem, (_, folder) in folders.items()}
    return inside, {stem: inside[stem] for stem, (split, _) in folders.items() if len(sources[split]) == 1}


def _splits(stems: list[str], split_files: dict | None, val_fraction: float | None, test_fraction: float | None,
            seed: int, findings: list[Finding], groups: dict[str, str] | None = None,
            suffixes: tuple[str, ...] = ()) -> tuple[dict[str, str], list[str]]:
    """stem → split, and the splits that must not end up empty. Listed names may carry one of `suffixes`
    (--image-suffix, --mask-suffix: a list of image or mask file names), and columns after the name (Oxford-IIIT
    Pet's `Abyssinian_100 1 1 1`: a line naming no pair whole is read by its first field). Without split lists or a
    fraction given, split folders (train/, val/, test/ at the top of --images) are the splits; else a random split
    (val 0.2)."""
    known = set(stems)

    def cut(listed: str) -> str:
        for suffix in suffixes:
            base = without(listed, suffix) if suffix else None
            if base:
                return base
        return listed

    def paired_stem(listed: str) -> str:
        whole, first = cut(listed), cut(listed.split()[0])
        return first if whole not in known and first in known else whole

    if split_files and (val_fraction is not None or test_fraction is not None):  # the fraction was silently unused
        given = "--val-fraction" if val_fraction is not None else "--test-fraction"
        raise ConfigError(f"{given} splits at random, --split-file by its lists: give one or the other (the pairs no "
                          "list names are left out; list them in a --split-file val=FILE)")
    if split_files:
        lists = {str(split): [paired_stem(x) for x in read_split_list(path)] for split, path in split_files.items()}
        assigned, list_findings = from_lists(stems, lists, {str(k): str(v) for k, v in split_files.items()})
        findings.extend(list_findings)
        if groups is not None:
            findings.extend(group_leaks(assigned, groups))
        return assigned, list(lists)
    folders = split_folders(stems)
    if folders and val_fraction is None and test_fraction is None:
        return folder_splits(stems, folders, seed, findings, groups)
    if folders:
        from segcli.console import info

        info("prepare: note: a fraction is given, so all pairs are split at random; the split folders' names "
             f"({', '.join(sorted({folder for _, folder in folders.values()}))}) are not used")
    val_fraction = DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
    test_fraction = 0.0 if test_fraction is None else float(test_fraction)
    assigned = random_split(stems, val_fraction, test_fraction, seed, groups)
    expected = ["train"] + [name for name, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
    return assigned, expected


def collect(images: str | Path, masks: str | Path, *, name: str, classes: str | None = None, palette: str | None = None,
            ignore_index: int | None = None, remap: dict | None = None, split_files: dict | None = None,
            val_fraction: float | None = None, test_fraction: float | None = None, seed: int = 0, folds: int | None = None,
            group: str | None = None, image_suffix: str | None = None, mask_suffix: str | None = None,
            reduce_zero_label: bool = False, mask_threshold: int | None = None) -> Source:
    """Pair the files, assign splits and folds (keeping each --group whole), and describe how masks decode.
    val_fraction/test_fraction None: not given (split folders are then the splits, else val 0.2, no test)."""
    findings: list[Finding] = []
    image_suffix, mask_suffix = without_extension(str(image_suffix or "")), without_extension(str(mask_suffix or ""))
    for option, value in (("--image-suffix", image_suffix), ("--mask-suffix", mask_suffix)):
        if "/" in value or "\\" in value:
            raise ConfigError(f"{option} '{value}': give the end of a file name without its extension, e.g. _mask")
    image_map = _by_stem(Path(images), "images", findings, image_suffix)
    mask_findings: list[Finding] = []
    mask_map = _by_stem(Path(masks), "masks", mask_findings, mask_suffix)
    siblings, why, roles = None, "", {}
    one_folder = Path(images).resolve() == Path(masks).resolve()
    if one_folder:  # DIR/{train,val}/{images,masks}/x, DIR/{train,trainannot}/x
        roles = role_folders(list(image_map) + list(mask_map))
        siblings, why = sibling_folders(image_map, mask_map, roles)
    one_folder_stems = set(image_map)  # every file of the one folder, for the hint that names its two folders
    if siblings:
        image_map, mask_map = siblings  # (the one folder's duplicate stems are in findings already)
    else:
        findings.extend(mask_findings)
    if one_folder and not siblings:  # a file is an image or a mask, not both
        if why:
            folders = folder_pair_hint(Path(images), one_folder_stems)
            raise ConfigError(f"--images and --masks are the same folder {images}, whose image and mask folders "
                              f"(images/ beside masks/, train/ beside trainannot/) pair file for file only when every "
                              f"file lies in one of them: {why}; move it, or give --images and --masks the two "
                              f"folders{folders}")
        if not (image_suffix or mask_suffix):
            hint = suffix_hint(set(image_map), set(mask_map))
            folders = "" if hint else folder_pair_hint(Path(images), set(image_map))
            if folders:
                raise ConfigError(f"--images and --masks are the same folder {images}{folders}")
            raise ConfigError(f"--images and --masks are the same folder {images}: say which files are masks with "
                              f"--mask-suffix (and --image-suffix){hint or ', e.g. --mask-suffix _mask'}")
        named_masks = set(mask_map.values()) if mask_suffix else set()
        image_map = {stem: path for stem, path in image_map.items() if path not in named_masks}
        taken = set(image_map.values())
        mask_map = {stem: path for stem, path in mask_map.items() if path not in taken}
    ambiguous = {f.stem for f in findings}  # duplicate stems: already reported, their counterparts are not orphans
    if siblings:
        ambiguous |= {keyed[0] for f in findings if (keyed := sibling_key(f.stem, roles))}
    image_map = {s: p for s, p in image_map.items() if s not in ambiguous}
    mask_map = {s: p for s, p in mask_map.items() if s not in ambiguous}
    lone_images, lone_masks = set(image_map) - set(mask_map), set(mask_map) - set(image_map)
    hint = suffix_hint(lone_images, lone_masks, image_suffix, mask_suffix) if lone_images or lone_masks else ""
    unlabelled = unlabelled_folders(lone_images, set(image_map) & set(mask_map))
    for stem in sorted(lone_images):
        folder = next((f for f in folders_of(stem) if f in unlabelled), None)
        reason = (f"; {folder}/ holds no masks at all (an unlabelled test set?): --keep-going leaves it out, and "
                  f"`segcli predict` labels it" if folder else hint)
        findings.append(error("missing_mask", str(image_map[stem]), f"no mask with stem '{stem}{mask_suffix}' in "
                              f"{masks}{reason}", stem=stem))
    for stem in sorted(lone_masks):
        findings.append(error("missing_image", str(mask_map[stem]), f"no image with stem '{stem}{image_suffix}' in "
                              f"{images}{hint}", stem=stem))
    stems = sorted(set(image_map) & set(mask_map))
    if siblings and not stems:  # image and mask folders side by side, but none of their names pair (training/images/
        folders = folder_pair_hint(Path(images), one_folder_stems)  # beside training/v1.2/labels/: a level deeper)
        if folders:
            raise ConfigError(f"--images and --masks are the same folder {images}, whose image and mask folders pair "
                              f"no file{folders}")

    names, table_remap, names_values = read_class_table(classes)
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
    if reduce_zero_label and palette:  # it shifted the ids under the palette's names: cat's pixels named background
        raise ConfigError("--reduce-zero-label shifts mask values, but --palette maps colours to classes itself (its "
                          "first line is class 0): give the unlabelled colour a line 'ignore R G B' instead, and "
                          "leave out --reduce-zero-label")
    if reduce_zero_label and names_values:
        raise ConfigError(f"--reduce-zero-label shifts mask values, but --classes {classes} names the values itself: "
                          "name value 0 'ignore' there instead (it then means 'not labelled'), and leave out "
                          "--reduce-zero-label")
    if reduce_zero_label and ignore == 0:
        raise ConfigError("--reduce-zero-label makes 0 'not labelled' and shifts the classes to 0..N-1: leave out "
                          "--ignore-index 0 (the ignore index stays 255)")
    if names is not None and ignore < len(names) and ignore_index is None:  # 256 classes or more, none said
        raise ConfigError(f"--ignore-index: the default {ignore} is also the id of class '{names[ignore]}' "
                          f"({len(names)} classes); pass a value >= {len(names)}, e.g. --ignore-index 65535")
    if names is not None and ignore < len(names):
        raise ConfigError(f"--ignore-index {ignore} is also the id of class '{names[ignore]}'; pick a value >= {len(names)}"
                          + (ZERO_LABEL_HINT if ignore == 0 else ""))
    given = {**(zero_label_remap(ignore, None if names is None else len(names)) if reduce_zero_label else {}),
             **parse_remap(remap)}  # an explicit --remap of a raw value wins
    check_remap(given, None if names is None else len(names), ignore)
    unnamed = max(len(names or ()), ignore) + 1  # neither a class id nor the ignore index: an out_of_range finding
    table = {raw: {-1: ignore, -2: unnamed}.get(target, target) for raw, target in table_remap.items()}  # --classes'
    remap = {**table, **given}
    ignore_declared = ignore_index is not None or reduce_zero_label or -1 in table_remap.values()
    decoder = MaskDecoder(num_classes=None if names is None else len(names), ignore_index=ignore, colours=colours,
                          ignore_declared=ignore_declared, remap=remap, threshold=_threshold(mask_threshold, palette),
                          options=True)

    folders = split_folders(stems) if not split_files and val_fraction is None and test_fraction is None else None
    inside, prepared = _inside_split_folders(folders)
    groups = None
    if group and folders is None:  # split at random or by lists: train/seqA_0 and test/seqA_9 are still one sequence
        inside, _ = _inside_split_folders(split_folders(stems))
    if group:  # matched against the stem inside its split folder: '^[^_]+' gives 'seq1' for train/seq1_0001
        keyed = group_keys(sorted({inside.get(s, s) for s in stems}), str(group))
        groups = {s: keyed[inside.get(s, s)] for s in stems}
    assigned, expected = _splits(stems, split_files, val_fraction, test_fraction, int(seed), findings, groups,
                                 (image_suffix, mask_suffix))
    fold_of = {}
    if folds:
        fold_of = assign_folds([s for s in stems if assigned.get(s) == "train"], int(folds), int(seed), groups)
    samples = [Sample(split=assigned[s], stem=prepared.get(s, s), image=image_map[s], mask=mask_map[s], fold=fold_of.get(s),
                      group=groups[s] if groups else None)
               for s in sorted(stems, key=lambda s: expected.index(assigned[s]) if assigned.get(s) in expected else 0)
               if s in assigned]  # split by split (train first), each in stem order
    palette_out = palette_colours or default_palette(len(names) if names else 256)
    inputs = [Path(f) for f in (classes, palette, *(split_files or {}).values()) if f is not None and _is_file(f)]
    return Source(name=name, classes=names, palette=palette_out, ignore_index=ignore, samples=samples,
                  decoder=decoder, splits=expected, findings=findings, inputs=inputs)


def _is_file(spec) -> bool:
    """Whether an option's value names a file (--classes may be 'a,b,c', too long for a file name)."""
    try:
        return Path(spec).is_file()
    except OSError:
        return False
