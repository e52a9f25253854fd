"""How `prepare folder` pairs images with masks: by stem less a suffix (`x.jpg` ↔ `x_mask.png`), across sibling
image and mask folders of one tree (`train/images/x` ↔ `train/masks/x`, `train/x` ↔ `trainannot/x`, LoveDA's
`images_png/` ↔ `masks_png/`), and the hints that name the suffixes or folders that would pair them."""

from __future__ import annotations

from pathlib import Path
from shlex import quote

from segcli.data.splits import split_of_folder
from segcli.inference.io import IMAGE_EXTENSIONS

SEPARATORS = "_-. "  # where a name's suffix may start (x_mask, x-label, x.seg, x gt)
MASK_WORDS = ("mask", "label", "lbl", "gt", "seg", "ann", "class", "target")  # how mask names usually end


def without(name: str, suffix: str) -> str | None:
    """`name` less `suffix` ('x_mask' less '_mask' → 'x'); None when it does not end in it or nothing (of its file
    name) would be left."""
    if not name.endswith(suffix) or len(name) <= len(suffix) or name[-len(suffix) - 1] == "/":
        return None
    return name[: len(name) - len(suffix)]


def without_extension(suffix: str) -> str:
    """--mask-suffix _mask.png (the whole end of the file name, as x_mask.png shows it) → _mask: stems are matched
    without their extension."""
    ext = next((e for e in IMAGE_EXTENSIONS if suffix.lower().endswith(e)), "")
    return suffix[: len(suffix) - len(ext)]


IMAGE_FOLDERS = ("images", "image", "imgs", "img", "img_dir")  # sibling folder names of one tree: images/ beside masks/
MASK_FOLDERS = ("masks", "mask", "labels", "label", "annotations", "annotation", "anns", "ann", "ann_dir", "gt")
MASK_FOLDER_ENDINGS = ("annotations", "annot", "labels", "label", "masks", "mask", "gt")  # X/ beside Xannot/, X_labels/


def _worded(name: str, words) -> tuple[str, str | None] | None:
    """(the rest, the name it gives a pair's stem) of a folder named one of `words` plus a separator and more:
    images_png → ('png', None) (a file format names nothing), images_train → ('train', 'train'); None otherwise."""
    word, sep, rest = next(((name[:i], name[i], name[i + 1:]) for i, c in enumerate(name) if c in "_-"), (name, "", ""))
    if not (sep and rest and word.lower() in words):
        return None
    return rest, None if f".{rest.lower()}" in IMAGE_EXTENSIONS else rest


def role_folders(stems) -> dict[str, tuple[int, str | None]]:
    """Folder (a path relative to the one folder) → (0 for images or 1 for masks, the name it takes in a pair's stem:
    None to leave it out). Folders named images/ and masks/ (IMAGE_FOLDERS, MASK_FOLDERS: left out), sibling folders
    named X (or X plus an image word) and X plus a mask word (SegNet's train/ beside trainannot/, Kaggle's train/
    beside train_labels/, train_images/ beside train_masks/: both named X), sibling folders named an image word and
    a mask word plus one ending (LoveDA's images_png/ beside masks_png/: the ending, unless it is a file format), and
    a folder beside such a pair without a mask folder of its own (an unlabelled test/, Test/x/images_png/: images)."""
    folders = {folder for stem in stems for folder in folders_of(stem)}
    by_lower = {folder.lower(): folder for folder in sorted(folders, reverse=True)}
    roles: dict[str, tuple[int, str | None]] = {}
    endings: set[str] = set()  # of the image folders paired by their word and ending (images_png: 'png')

    def sibling(parent: str, names) -> str | None:
        """The first folder of `parent` named one of `names`, any case."""
        return next((by_lower[key] for n in names if (key := f"{parent}/{n}".lstrip("/").lower()) in by_lower), None)

    for folder in sorted(folders):
        parent, _, name = folder.rpartition("/")
        if name.lower() in IMAGE_FOLDERS + MASK_FOLDERS:
            roles[folder] = (0 if name.lower() in IMAGE_FOLDERS else 1, None)
            continue
        worded = _worded(name, MASK_FOLDERS)
        images = worded and sibling(parent, [f"{word}{sep}{worded[0]}" for word in IMAGE_FOLDERS for sep in "_-"])
        if images:  # masks_png/ beside images_png/
            roles[folder], roles[images] = (1, worded[1]), (0, worded[1])
            endings.add(worded[0].lower())
            continue
        for ending in MASK_FOLDER_ENDINGS:
            base = name[:-len(ending)].rstrip("_-") if name.lower().endswith(ending) else ""
            images = base and sibling(parent, [base] + [f"{base}{sep}{word}" for word in IMAGE_FOLDERS for sep in "_-"])
            if images:  # trainannot/ beside train/, train_masks/ beside train_images/
                roles[folder], roles[images] = (1, base), (0, base)
                break
    paired_parents = {folder.rpartition("/")[0] for folder, (side, name) in roles.items() if name}
    for folder in sorted(folders - set(roles)):  # an unlabelled test/ beside train/ + trainannot/: images without masks
        parent, _, name = folder.rpartition("/")
        worded = _worded(name, IMAGE_FOLDERS)
        if worded and worded[0].lower() in endings:  # LoveDA's Test/Urban/images_png/ without a masks_png/
            roles[folder] = (0, worded[1])
            continue
        if (split_of_folder(name) and parent in paired_parents
                and not any(other.startswith(f"{folder}/") for other in roles)):
            roles[folder] = (0, name)
    return roles


def sibling_key(stem: str, roles: dict[str, tuple[int, str | None]]) -> tuple[str, int] | None:
    """('train/x', 0) for 'train/images/x' or 'train/x', ('train/x', 1) for 'train/masks/x' or 'trainannot/x': the stem
    with its one image or mask folder named as in a pair (role_folders), and which side it is; None when it lies
    under none of them, or under two."""
    parts = stem.split("/")
    found = [(i, roles[folder]) for i in range(1, len(parts)) if (folder := "/".join(parts[:i])) in roles]
    if len(found) != 1:
        return None
    index, (side, name) = found[0]
    return "/".join(parts[:index - 1] + ([name] if name else []) + parts[index:]), side


def sibling_folders(image_map: dict[str, Path], mask_map: dict[str, Path], roles: dict[str, tuple[int, str | None]]):
    """One folder holding image and mask folders side by side, at any depth (`train/images/x.jpg` beside
    `train/masks/x.png`, `train/x.png` beside `trainannot/x.png`): (images, masks) keyed by the stems a pair takes
    (`train/x`), or None and why not ('' when there are no such folders). None unless every image (of image_map: the
    files as images) and mask (of mask_map: as masks, --mask-suffix cut) lies under exactly one such folder, there are
    both kinds, and no two files of one kind share a key."""
    if not roles:
        return None, ""
    sides: tuple[dict[str, Path], dict[str, Path]] = ({}, {})
    why = ""
    for want, found in enumerate((image_map, mask_map)):
        for stem, path in sorted(found.items()):
            keyed = sibling_key(stem, roles)
            if keyed is None:
                under = "two" if any(folder in roles for folder in folders_of(stem)) else "neither"
                why = why or f"{path} lies in {under} of them"
                continue
            key, side = keyed
            if side != want:  # a mask among the images (or the other way round): the other pass takes it
                continue
            if key in sides[side]:
                why = why or f"{sides[side][key]} and {path} pair alike"
            sides[side][key] = path
    if not why and not all(sides):
        why = f"there are no {'masks' if sides[0] else 'images'} in them"
    return (None, why) if why else (sides, "")


def unlabelled_folders(lone_images: set[str], paired: set[str]) -> set[str]:
    """The top folders of the stems (`test` of `test/x`) whose images all lack masks, while other folders' images
    pair."""
    if not paired:
        return set()
    with_masks = {stem.partition("/")[0] for stem in paired}
    return {top for stem in lone_images if (top := stem.partition("/")[0]) != stem and top not in with_masks}


def folders_of(stem: str) -> list[str]:
    """'a', 'a/b' for the stem 'a/b/x'."""
    parts = stem.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _name_splits(stem: str):
    """(base, suffix) pairs of a stem: the whole stem with no suffix, then cut at each separator of its file name."""
    yield stem, ""
    start = stem.rfind("/") + 1
    for k in range(len(stem) - 1, start, -1):
        if stem[k] in SEPARATORS:
            yield stem[:k], stem[k:]


def _cut(stem: str, suffix: str) -> str | None:
    """`stem` less `suffix` as _name_splits cuts it (inside the file name, something left); None when it cannot."""
    if not suffix:
        return stem
    return stem[: -len(suffix)] if stem.endswith(suffix) and len(stem) - len(suffix) > stem.rfind("/") + 1 else None


def suffix_hint(image_stems, mask_stems, image_suffix: str = "", mask_suffix: str = "") -> str:
    """' (…: pass --mask-suffix _mask)' when cutting a suffix off these unpaired image and/or mask names pairs a
    quarter of them or more (the cut that pairs the most); '' otherwise. Chooses the cut on up to 2000 names of each;
    the count in the hint is over all of them."""
    found = _best_cut(image_stems, mask_stems)
    if found is None:
        return ""
    image_cut, mask_cut, count, base = found
    # a stem is its name less the given suffix, so the name is base + cut + given suffix
    options = " ".join(f"--{kind}-suffix {cut + given}" for kind, given, cut in
                       (("image", image_suffix, image_cut), ("mask", mask_suffix, mask_cut)) if cut)
    return (f" (the names pair as '{base}{image_cut}{image_suffix}' ↔ '{base}{mask_cut}{mask_suffix}' in {count} "
            f"case(s): pass {options})")


def _best_cut(image_stems, mask_stems) -> tuple[str, str, int, str] | None:
    """(image cut, mask cut, how many names it pairs, an example base) of the suffixes whose cutting pairs the most of
    these names, a quarter of them or more; None when no cut does."""
    masks_by_base: dict[str, list[str]] = {}
    for stem in sorted(mask_stems)[:2000]:
        for base, cut in _name_splits(stem):
            masks_by_base.setdefault(base, []).append(cut)
    votes: dict[tuple[str, str], list] = {}  # (image cut, mask cut) → [count, an example base]
    for stem in sorted(image_stems)[:2000]:
        for base, image_cut in _name_splits(stem):
            for mask_cut in masks_by_base.get(base, ()):
                if mask_cut != image_cut:  # the same cut on both sides pairs nothing new
                    votes.setdefault((image_cut, mask_cut), [0, base])[0] += 1
    if not votes:
        return None

    def rank(item):
        (image_cut, mask_cut), (count, _) = item
        return count, sum(w in mask_cut.lower() for w in MASK_WORDS), -len(image_cut + mask_cut)  # _gtFine_labelIds
                                                                          # before _gtFine_color (colours, not ids)

    (image_cut, mask_cut), (count, base) = max(votes.items(), key=rank)
    if count < min(len(image_stems), len(mask_stems), 2000) // 4:  # names that share a start by chance (video frames
        return None                                                 # 0016E5_00450, 0016E5_00901): no suffix pairs them
    if len(image_stems) > 2000 or len(mask_stems) > 2000:  # the cut was chosen on a sample: count it on every name
        masks = set(mask_stems)
        count = sum(1 for stem in image_stems if (cut := _cut(stem, image_cut)) is not None and cut + mask_cut in masks)
    return image_cut, mask_cut, count, base


def folder_pair_hint(root: Path, stems, limit: int = 12) -> str:
    """'; its images and masks seem to lie in A/ and B/, …: give --images … --masks …' when, in the one folder given
    as both --images and --masks, the files of two of its folders (of the `limit` holding the most) pair by name,
    as they are or less a suffix (ISIC's …_Input/x.jpg beside …_GroundTruth/x_segmentation.png); '' otherwise. The
    mask folder is the one not named images/, whose names or folder name carry a mask word, else the one not holding
    JPEGs. Two split folders alike (images/10k/train/ and labels/sem_seg/masks/train/) name the folders above them,
    which keep the splits; other folders whose names pair as well are named as alternatives."""
    from itertools import islice

    by_folder: dict[str, dict[str, str]] = {}  # folder → file stem → the file's path relative to root
    for stem in stems:
        folder, _, name = stem.rpartition("/")
        by_folder.setdefault(folder, {})[name] = stem
    largest = sorted(by_folder, key=lambda f: (-len(by_folder[f]), f))[:limit]
    pairs = []
    for i, one in enumerate(largest):
        for other in largest[i + 1:]:
            same = len(by_folder[one].keys() & by_folder[other].keys())
            cut = _best_cut(set(by_folder[one]), set(by_folder[other])) or ("", "", 0, "")
            if 2 * max(same, cut[2]) > min(len(by_folder[one]), len(by_folder[other])):  # most of them: not by chance
                pairs.append((max(same, cut[2]), one, other, cut[:2] if cut[2] > same else ("", "")))
    if not pairs:
        return ""

    def masky(folder: str, cut: str) -> tuple[bool, bool, bool]:
        name = folder.rpartition("/")[2]
        words = (cut + name).lower()
        jpegs = any(path.suffix.lower() in (".jpg", ".jpeg") for path in islice((root / folder).iterdir(), 50))
        return name.lower() not in IMAGE_FOLDERS, any(word in words for word in MASK_WORDS), not jpegs

    oriented = []  # (count, image folder, mask folder, (image cut, mask cut)), the image folder first
    for count, one, other, (one_cut, other_cut) in pairs:
        flip = masky(one, one_cut) > masky(other, other_cut)
        oriented.append((count, other, one, (other_cut, one_cut)) if flip else (count, one, other, (one_cut, other_cut)))
    # grey masks before colour renderings of them (BDD100K's masks/ beside colormaps/), then by name
    oriented.sort(key=lambda pair: (-pair[0], _colour(root / pair[2]), pair[2]))
    taken: set[str] = set()
    best = [pair for pair in oriented  # each folder in its best pair only
            if not {pair[1], pair[2]} & taken and not taken.update(pair[1:3])]
    count, images, masks, cuts = best[0]
    alike = [pair for pair in oriented if pair[:2] == best[0][:2] and pair[2] != masks]  # as many names pair elsewhere

    def options(cuts: tuple[str, str]) -> str:
        return "".join(f" --{kind}-suffix {cut}" for kind, cut in zip(("image", "mask"), cuts) if cut)

    split = split_of_folder(images.rpartition("/")[2])
    parents = images.rpartition("/")[0], masks.rpartition("/")[0]
    apart = all(parents) and not any(f"{one}/".startswith(f"{other}/") for one, other in (parents, parents[::-1]))
    if split and split == split_of_folder(masks.rpartition("/")[2]) and apart:
        # images/10k/train beside labels/sem_seg/masks/train: the folders above keep the split folders as splits
        # (not where one holds the other: train/ beside labels/train/ would make the masks images)
        unlabelled = sorted(p.name for p in (root / parents[0]).iterdir() if p.is_dir() and split_of_folder(p.name)
                            and not (root / parents[1] / p.name).is_dir())
        keep = (f" --keep-going, as {', '.join(f'{name}/' for name in unlabelled)} hold(s) no masks" if unlabelled
                else "")
        return (f"; its images and masks seem to lie in {parents[0]}/ and {parents[1]}/, each holding split folders "
                f"({count} file name(s) in {split}/ pair): give --images {quote(str(root / parents[0]))} --masks "
                f"{quote(str(root / parents[1]))}{options(cuts)}{keep}")
    more = (f" (one pair of folders per prepare; to keep {len(best)} such pairs as splits, link them as "
            f"DIR/train/images + DIR/train/masks, DIR/val/images + DIR/val/masks and give --images DIR --masks DIR"
            f"{options(cuts)})" if len(best) > 1 else "")
    also = "".join(f"; or, if the masks are those in {pair[2]}/, --masks {quote(str(root / pair[2]))}{options(pair[3])}"
                   for pair in alike[:2])
    return (f"; its images and masks seem to lie in {images or '.'}/ and {masks or '.'}/, folders whose names segcli "
            f"does not pair ({count} file name(s) pair): give --images {quote(str(root / images))} --masks "
            f"{quote(str(root / masks))}{options(cuts)}{more}{also}")


def _colour(folder: Path) -> bool:
    """Whether the first image in `folder` is stored as RGB(A) colours rather than grey or palette indices."""
    from PIL import Image, UnidentifiedImageError

    first = next((p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS), None)
    try:
        with Image.open(first) as image:
            return image.mode in ("RGB", "RGBA")
    except (OSError, TypeError, UnidentifiedImageError):
        return False
