"""Per-image outputs of `segcli predict`, each written atomically (temp file + rename).

For an input with output-relative path REL (see segcli.inference.sources), under OUT:
  mask         REL.png              (H, W) class ids, 8-bit (16-bit above 256 classes); with
                                    palette_png an indexed (mode P) PNG: viewers show colours, the
                                    stored values are still the ids (read with PIL, not cv2)
  overlay      overlays/REL.png     class colours blended on the image (alpha), optional legend
  prob         probs/REL.npz        "prob": (K, H, W) uint8, p ≈ prob / 255 (round(p * 255));
                                    "classes": (K,) str. np.load(path)["prob"] / 255.0
  uncertainty  uncertainty/REL.png  (H, W) uint8 per-pixel entropy / log(K) × 255 (0 = certain);
                                    the image's score is the mean normalised entropy, 0..1
  areas        (no file per image)  pixel count and fraction of the frame per class → areas.csv
"""

from __future__ import annotations

import io as _io
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segcli.config import did_you_mean
from segcli.errors import ConfigError, DataError
from segcli.inference.io import atomic_write_bytes, class_labels, overlay, write_png

KINDS = ("mask", "overlay", "prob", "uncertainty", "areas")
FOLDERS = {"overlay": "overlays", "prob": "probs", "uncertainty": "uncertainty"}
SUFFIXES = {"mask": ".png", "overlay": ".png", "prob": ".npz", "uncertainty": ".png"}


def parse_save(save) -> tuple[str, ...]:
    """'mask,overlay' or ['mask', 'overlay'] → ('mask', 'overlay'), checked against KINDS."""
    names = [s.strip() for s in (save.split(",") if isinstance(save, str) else list(save)) if str(s).strip()]
    unknown = [n for n in names if n not in KINDS]
    if unknown or not names:
        hint = did_you_mean(str(unknown[0]), list(KINDS)) if unknown else ""
        raise ConfigError(f"save={','.join(map(str, names)) or '(empty)'}: choose from {','.join(KINDS)} "
                          f"(unknown: {', '.join(unknown) or 'none given'}){hint}")
    return tuple(dict.fromkeys(names))


@dataclass
class Record:
    """What one predicted image produced: for --jsonl, areas.csv and uncertainty.csv."""

    input: str
    outputs: dict[str, str]
    pixels: list[int]
    uncertainty: float | None = None
    skipped: bool = False

    def fractions(self) -> list[float]:
        total = sum(self.pixels)
        return [p / total if total else 0.0 for p in self.pixels]

    def to_json(self, classes: list[str]) -> dict:
        row = {"input": self.input, "outputs": self.outputs,
               "fractions": dict(zip(classes, self.fractions())), "pixels": dict(zip(classes, self.pixels))}
        if self.uncertainty is not None:
            row["uncertainty"] = self.uncertainty
        if self.skipped:
            row["skipped"] = True
        return row


@dataclass
class Outputs:
    """Which outputs to write under `out`, and how (the model's classes and palette, overlay opacity)."""

    out: Path
    save: tuple[str, ...]
    classes: list[str]
    palette: list[list[int]]
    ignore_index: int
    alpha: float = 0.5
    legend: bool = False
    palette_png: bool = False
    files: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        self.out = Path(self.out)
        self.files = tuple(k for k in self.save if k != "areas")
        if self.palette_png and len(self.classes) > 256:
            raise ConfigError(f"--palette-png: an indexed PNG holds at most 256 classes, the model has "
                              f"{len(self.classes)}; drop --palette-png (masks are then PNGs of class ids, 16-bit)")

    @property
    def needs_probs(self) -> bool:
        return "prob" in self.save or "uncertainty" in self.save

    def path(self, kind: str, rel: Path) -> Path:
        """The output file of `rel` of a per-image kind (one of SUFFIXES), saved now or not."""
        return self.out / FOLDERS.get(kind, "") / with_suffix(rel, SUFFIXES[kind])

    def paths(self, rel: Path) -> dict[str, Path]:
        """Per-image output files of `rel` (areas has none)."""
        return {k: self.path(k, rel) for k in self.files}

    def done(self, rel: Path) -> bool:
        """True when every per-image output of `rel` exists and is whole (whole_file). segcli writes them atomically,
        but a file cut off by a full disk (an earlier segcli, a copy) or by a crash (a zero-length file after a
        power cut: the rename reached the disk, the data not) exists too: trusting it, --skip-existing stopped with
        "internal error: OSError: image file is truncated", or kept a broken overlay."""
        paths = self.paths(rel)
        return bool(paths) and all(whole_file(p) for p in paths.values())

    # ------------------------------------------------------------------ writing
    def write(self, source: str, rel: Path, image: np.ndarray, mask: np.ndarray, probs: np.ndarray | None = None) -> Record:
        """Write the outputs of one image: (H, W, 3) uint8 RGB, (H, W) ids, (K, H, W) float32 probabilities."""
        paths = self.paths(rel)
        score = None
        if "mask" in paths:
            self.write_mask(paths["mask"], mask)
        if "overlay" in paths:
            write_png(paths["overlay"], self.overlay(image, mask))
        if "prob" in paths:
            write_prob(paths["prob"], probs, self.classes)
        if "uncertainty" in self.save and probs is not None:
            entropy = np.round(normalised_entropy(probs) * 255).astype(np.uint8)
            score = uncertainty_score(entropy)  # of the map as written: a resumed run reads back the same number
            write_png(paths["uncertainty"], entropy)
        pixels = np.bincount(mask.ravel(), minlength=len(self.classes))[: len(self.classes)].tolist()
        return Record(source, {k: str(p) for k, p in paths.items()}, pixels, score)

    def reread(self, source: str, rel: Path) -> Record:
        """The Record of an image finished by an earlier run (--skip-existing), from its files."""
        paths = self.paths(rel)
        pixels = [0] * len(self.classes)
        if "mask" in paths:
            counts = np.bincount(read_ids(paths["mask"]).ravel(), minlength=len(self.classes))
            if counts[len(self.classes):].any():  # dropped, the class fractions would not sum to 1
                raise DataError(f"{paths['mask']}: holds class id {int(np.flatnonzero(counts)[-1])}, but the model "
                                f"has {len(self.classes)} classes: an earlier run with another model wrote it; predict "
                                "into a new --out, or without --skip-existing")
            pixels = counts[: len(self.classes)].tolist()
        score = None
        if "uncertainty" in paths:
            score = uncertainty_score(read_ids(paths["uncertainty"]))
        return Record(source, {k: str(p) for k, p in paths.items()}, pixels, score, skipped=True)

    def write_mask(self, path: Path, mask: np.ndarray) -> None:
        if not self.palette_png:
            write_png(path, mask)
            return
        from PIL import Image

        indexed = Image.fromarray(mask.astype(np.uint8), mode="L")
        flat = [v for colour in self.palette for v in colour]
        indexed.putpalette(flat + [0] * (768 - len(flat)))
        buffer = _io.BytesIO()
        indexed.save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())

    def overlay(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB blend of the class colours; with legend, the present classes top-left."""
        blended = overlay(image, mask, self.palette, self.ignore_index, self.alpha)
        if self.legend:
            draw_legend(blended, mask, self.classes, self.palette)
        return blended


def with_suffix(rel: Path, suffix: str) -> Path:
    """`rel` (an output-relative path without its input's suffix) + `suffix`: 'frame.0001' → 'frame.0001.png'.
    Path.with_suffix would replace '.0001' and give every frame of 'frame.0001.png', 'frame.0002.png' one name."""
    return rel.with_name(rel.name + suffix)


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """(K, H, W) probabilities → (H, W) float32 entropy / log(K), in 0..1."""
    k = probs.shape[0]
    p = np.clip(probs, 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(0)
    return (entropy / math.log(k) if k > 1 else entropy * 0).astype(np.float32)


def uncertainty_score(entropy_map: np.ndarray) -> float:
    """An image's uncertainty score, 0..1: the mean of its (H, W) uint8 entropy map (entropy / log K × 255) / 255.
    Taken from the stored map, so that a run resumed with --skip-existing ranks finished images exactly as the run
    that wrote them did."""
    return float(entropy_map.mean() / 255.0)


PROB_COMPRESSION = 1  # zlib level of probs/*.npz: np.savez_compressed's default (6) took 77 ms per 11-class
# 360×480 map against 15 ms, for files 13-23% smaller; 1 is also the level OpenCV writes the PNG outputs with


def write_prob(path: Path, probs: np.ndarray, classes: list[str]) -> None:
    """(K, H, W) float probabilities → compressed .npz of uint8 round(p × 255) and the class names: what
    np.savez_compressed writes (np.load reads the same arrays), at zlib level PROB_COMPRESSION."""
    import zipfile

    arrays = {"prob": np.round(np.clip(probs, 0, 1) * 255).astype(np.uint8), "classes": np.array(classes)}
    buffer = _io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=PROB_COMPRESSION) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:  # as numpy's _savez writes them
                np.lib.format.write_array(member, array)
    atomic_write_bytes(path, buffer.getvalue())


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # a PNG's last chunk, as every encoder writes it


def whole_file(path: Path) -> bool:
    """Whether an output file is complete, from its end: a PNG ends with its IEND chunk, an .npz (a zip) with its
    central directory; a file cut off (or empty) does not."""
    import zipfile

    try:
        with open(path, "rb") as handle:
            if path.suffix.lower() == ".npz":
                return zipfile.is_zipfile(handle)
            size = handle.seek(0, 2)
            if path.suffix.lower() != ".png":
                return size > 0
            handle.seek(max(0, size - len(PNG_END)))
            return size > len(PNG_END) and handle.read() == PNG_END
    except OSError:  # not there, or not a file
        return False


def read_ids(path: Path) -> np.ndarray:
    """A single-channel PNG (plain or indexed) → (H, W) stored values (PIL keeps palette indices)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img)
    except (OSError, SyntaxError, ValueError) as err:  # PIL's "image file is truncated", a damaged chunk
        raise DataError(f"{path}: not a readable PNG ({err}); delete it, and predict again") from None


def draw_legend(canvas: np.ndarray, mask: np.ndarray, classes: list[str], palette: list[list[int]]) -> None:
    """Draw a colour box and name for each class present in `mask` onto `canvas` (in place)."""
    present = [c for c in np.unique(mask).tolist() if c < len(classes)]
    labels = class_labels(classes)  # '道路' and '天空' were both drawn '??'; 'café' was 'caf??'
    scale = max(0.3, min(canvas.shape[:2]) / 600)
    step = max(10, int(22 * scale))
    for row, c in enumerate(present):
        y = 4 + row * step
        if y + step > canvas.shape[0]:
            break
        colour = tuple(int(v) for v in palette[c])
        cv2.rectangle(canvas, (4, y), (4 + step - 4, y + step - 4), colour, -1)
        cv2.putText(canvas, labels[c], (step + 4, y + step - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale,
                    (255, 255, 255), max(1, int(scale)), cv2.LINE_AA)
