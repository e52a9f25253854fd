"""A bar chart of class frequencies per split, drawn with OpenCV (no plotting dependency).

One row per class; in it one bar per split whose length is the class's share of the split's
labelled pixels on a log scale (0.001 % … 100 %), with the percentage written after it. Beyond MAX_ROWS
classes (a class table read off sparse 16-bit ids can hold tens of thousands), the classes absent from every
split are left out and the rest cut at MAX_ROWS rows, each row then named with its id, and a line under the
chart says what was left out: a row per class would make an image too tall to encode as PNG (over 10^6 rows).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from segcli.inference.io import ascii_text, class_labels

SPLIT_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LOW = -5.0  # log10 of the smallest share drawn (0.001 %)
MAX_ROWS = 256  # the most class rows drawn (the card's stats list every class)


def _rows(classes: list[str], class_pixels: dict[str, list[int]]) -> tuple[list[int], str]:
    """The class ids to draw, and a note on those left out ('' when every class is drawn)."""
    if len(classes) <= MAX_ROWS:
        return list(range(len(classes))), ""
    present = [c for c in range(len(classes)) if any(c < len(p) and p[c] for p in class_pixels.values())]
    absent = len(classes) - len(present)
    parts = [f"{absent} absent from every split"] if absent else []
    if len(present) > MAX_ROWS:
        parts.append(f"{len(present) - MAX_ROWS} present ones after id {present[MAX_ROWS - 1]}")
    return present[:MAX_ROWS], (f"not drawn of {len(classes)} classes: {' and '.join(parts)} "
                                "(dataset.yaml's stats list every class)")


def class_frequency_chart(classes: list[str], class_pixels: dict[str, list[int]]) -> np.ndarray:
    """(H, W, 3) uint8 RGB chart; class_pixels: split → pixels per class id."""
    splits = list(class_pixels)
    rows, note = _rows(classes, class_pixels)
    labels = class_labels(classes, numbered=bool(note))  # drawable by OpenCV's font, ids where names are lost
    names = [labels[c] for c in rows]
    bar_h, gap = 9, 6
    row_h = bar_h * max(1, len(splits)) + gap
    label_w = 16 + 7 * max((min(len(c), 40) for c in names), default=4)  # names are drawn up to 40 characters
    plot_w, top = 560, 56
    width = max(label_w + plot_w + 90, label_w + 110 * len(splits) + 380, 16 + 7 * len(note))
    height = top + row_h * len(rows) + 30 + (20 if note else 0)
    image = np.full((height, width, 3), 255, np.uint8)

    def x_of(share: float) -> int:
        frac = (max(math.log10(share), _LOW) - _LOW) / -_LOW if share > 0 else 0.0
        return label_w + int(round(frac * plot_w))

    caption = "share of each split's labelled pixels (log scale)"
    cv2.putText(image, caption, (label_w + 110 * len(splits), 21), _FONT, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    for i, split in enumerate(splits):  # legend
        colour = SPLIT_COLOURS[i % len(SPLIT_COLOURS)]
        x = label_w + 110 * i
        cv2.rectangle(image, (x, 10), (x + 14, 22), colour, -1)
        cv2.putText(image, ascii_text(split), (x + 20, 21), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    bottom = height - (20 if note else 0)  # the grid's labels; the note below them
    for exponent in range(int(_LOW), 1):  # grid lines and their labels
        x = x_of(10.0**exponent)
        cv2.line(image, (x, top - 8), (x, bottom - 26), (225, 225, 225), 1)
        label = f"{10.0 ** (exponent + 2):g}%"
        cv2.putText(image, label, (x - 12, bottom - 10), _FONT, 0.38, (90, 90, 90), 1, cv2.LINE_AA)
    if note:
        cv2.putText(image, note, (6, height - 8), _FONT, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    totals = {s: max(1, sum(class_pixels[s])) for s in splits}
    for row, (c, name) in enumerate(zip(rows, names)):
        y = top + row * row_h
        cv2.putText(image, name[:40], (6, y + row_h // 2 + 3), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for i, split in enumerate(splits):
            share = class_pixels[split][c] / totals[split] if c < len(class_pixels[split]) else 0.0
            y0 = y + i * bar_h
            x1 = x_of(share)
            if share > 0:
                cv2.rectangle(image, (label_w, y0), (max(x1, label_w + 1), y0 + bar_h - 2), SPLIT_COLOURS[i % 6], -1)
            text = f"{share * 100:.3g}%" if share > 0 else "0 (absent)"
            cv2.putText(image, text, (x1 + 4, y0 + bar_h - 2), _FONT, 0.33, (60, 60, 60), 1, cv2.LINE_AA)
    return image
