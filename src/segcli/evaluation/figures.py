"""Figures drawn with OpenCV/numpy only: the row-normalised confusion matrix and the `--worst` panels.

Both return (H, W, 3) uint8 RGB arrays (written with segcli.inference.io.write_png).
"""

from __future__ import annotations

import cv2
import numpy as np

from segcli.inference.io import ascii_text, class_labels, colorize

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (128, 128, 128)
FP_COLOUR, FN_COLOUR, OTHER_COLOUR = (255, 40, 40), (40, 120, 255), (255, 210, 0)


def _text_size(text: str, scale: float) -> tuple[int, int]:
    (w, h), base = cv2.getTextSize(ascii_text(text), FONT, scale, 1)
    return w, h + base


def _put(canvas: np.ndarray, text: str, x: int, y: int, scale: float, colour=BLACK) -> None:
    """Text with its top-left corner at (x, y)."""
    _, h = _text_size(text, scale)
    cv2.putText(canvas, ascii_text(text), (int(x), int(y + h * 0.75)), FONT, scale, colour, 1, cv2.LINE_AA)


def _text_strip(names: list[str], cell: int, scale: float) -> np.ndarray:
    """Names left-aligned one per `cell`-high row on white: (len(names) * cell, max width + 8, 3)."""
    width = max(_text_size(n, scale)[0] for n in names) + 8
    strip = np.full((len(names) * cell, width, 3), 255, np.uint8)
    for i, name in enumerate(names):
        _, h = _text_size(name, scale)
        _put(strip, name, 4, i * cell + (cell - h) // 2, scale)
    return strip


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """(C, C) counts → (C, C) float64 rows summing to 1; NaN rows where a class has no ground truth."""
    m = np.asarray(matrix, np.float64)
    totals = m.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, m / np.where(totals > 0, totals, 1), np.nan)


HEAT_MAX = 2048  # longest side of the confusion heat map: 3,000 classes at 8 px each made a 24,000-px square PNG


def confusion_image(matrix, class_names: list[str]) -> np.ndarray:
    """Heat map of the row-normalised confusion matrix (rows: ground truth, columns: prediction), class
    names on both axes, the percentage in each cell when cells are large enough; grey rows: no ground truth.
    Above HEAT_MAX / 8 classes the cells are too small for names: the classes stand in id order (the title says so),
    and above HEAT_MAX classes the map is shrunk to HEAT_MAX pixels (each pixel the mean of the cells it covers)."""
    norm = row_normalised(np.asarray(matrix))
    c = norm.shape[0]
    cell = int(np.clip(640 // max(c, 1), 8, 44)) if c * 8 <= HEAT_MAX else max(1, HEAT_MAX // c)
    named = cell >= 8
    scale = 0.4 if cell >= 16 else 0.3
    values = np.nan_to_num(norm, nan=0.0)
    heat = cv2.applyColorMap((values * 255).round().astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    heat[np.isnan(norm[:, 0])] = (200, 200, 200)
    heat = np.repeat(np.repeat(heat, cell, 0), cell, 1) if cell > 1 else heat.copy()
    if heat.shape[0] > HEAT_MAX:
        heat = cv2.resize(heat, (HEAT_MAX, HEAT_MAX), interpolation=cv2.INTER_AREA)
    if cell >= 28:
        for i in range(c):
            for j in range(c):
                if not np.isnan(norm[i, j]):
                    text = f"{norm[i, j] * 100:.0f}"
                    w, h = _text_size(text, 0.35)
                    colour = BLACK if norm[i, j] > 0.6 else WHITE
                    _put(heat, text, j * cell + (cell - w) // 2, i * cell + (cell - h) // 2, 0.35, colour)
    if cell >= 4:
        for k in range(c + 1):  # grid lines
            heat[min(k * cell, c * cell - 1), :] = WHITE
            heat[:, min(k * cell, c * cell - 1)] = WHITE
    if named:
        labels = class_labels(list(class_names))
        rows = _text_strip(labels, cell, scale)  # left: ground-truth classes
        cols = np.rot90(_text_strip(labels, cell, scale)).copy()  # top: predicted classes, read bottom-up
    else:
        rows, cols = np.full((heat.shape[0], 4, 3), 255, np.uint8), np.full((4, heat.shape[1], 3), 255, np.uint8)
    title_h, pad = 26, 8
    axis_w = _text_size("ground truth", 0.45)[1] + 8
    title = "confusion, row-normalised (%): rows = ground truth, columns = prediction"
    if not named:
        title += f"; {c:,} classes in id order, top to bottom and left to right (names and counts: confusion.csv)"
    height = title_h + cols.shape[0] + heat.shape[0] + pad
    width = max(axis_w + rows.shape[1] + heat.shape[1] + pad, _text_size(title, 0.45)[0] + 8)
    canvas = np.full((height, width, 3), 255, np.uint8)
    top, left = title_h + cols.shape[0], axis_w + rows.shape[1]
    canvas[top:top + heat.shape[0], left:left + heat.shape[1]] = heat
    canvas[top:top + rows.shape[0], axis_w:axis_w + rows.shape[1]] = rows
    canvas[title_h:title_h + cols.shape[0], left:left + cols.shape[1]] = cols
    _put(canvas, title, 4, 4, 0.45)
    label = np.full((axis_w, heat.shape[0], 3), 255, np.uint8)
    w, _ = _text_size("ground truth", 0.45)
    _put(label, "ground truth", max(0, (heat.shape[0] - w) // 2), 2, 0.45)
    canvas[top:top + heat.shape[0], 0:axis_w] = np.rot90(label)
    return canvas


def error_map(image: np.ndarray, target: np.ndarray, pred: np.ndarray, focus: int | None, ignore_index: int) -> np.ndarray:
    """(H, W, 3) uint8: correct pixels as a dimmed grey image, ignore as grey checks; for the `focus` class false
    positives red and false negatives blue; other misclassified pixels yellow."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    out = np.repeat((grey // 2)[..., None], 3, axis=2)
    valid = target != ignore_index
    wrong = valid & (pred != target)
    out[wrong] = OTHER_COLOUR
    if focus is not None:
        out[wrong & (pred == focus)] = FP_COLOUR
        out[wrong & (target == focus)] = FN_COLOUR
    out[~valid] = ignore_checks(out.shape[:2])[~valid]
    return out


def ignore_checks(shape: tuple[int, int], square: int = 6) -> np.ndarray:
    """(H, W, 3) uint8 grey checks, how the panels show ignore pixels: black, as before, was also a palette's class 0
    (VOC's background, a binary mask's background) and the error map's dark correct pixels."""
    rows, cols = np.indices(shape)
    light = ((rows // square + cols // square) % 2).astype(bool)
    return np.where(light[..., None], np.uint8(224), np.uint8(168)).astype(np.uint8).repeat(3, axis=2)


PANEL_MIN, PANEL_MAX, CELL_MIN = 160, 800, 160  # --worst panels: small images scaled up (whole factors) to this
# shortest side, large ones down to this longest side (a 4000-px photo made a 16,000-px wide PNG); each panel's
# column at least this wide, so that its header fits beside the next one's


def panel_size(h: int, w: int) -> tuple[int, int]:
    """(height, width) an h × w image is drawn at in a `--worst` panel: scaled up by a whole factor (pixels stay
    square and crisp) until its shorter side is PANEL_MIN, or down until its longer side is PANEL_MAX; never so
    far up that its longer side passes PANEL_MAX."""
    if max(h, w) > PANEL_MAX:
        s = PANEL_MAX / max(h, w)
        return max(1, round(h * s)), max(1, round(w * s))
    f = max(1, min(-(-PANEL_MIN // min(h, w)), PANEL_MAX // max(h, w)))
    return h * f, w * f


def _fit(text: str, width: int, scale: float, keep_end: int = 0) -> str:
    """`text`, or it shortened with '...' before its last `keep_end` characters, so that it is at most `width` wide."""
    if _text_size(text, scale)[0] <= width:
        return text
    head, tail = text[:len(text) - keep_end], text[len(text) - keep_end:]
    while head and _text_size(head + "..." + tail, scale)[0] > width:
        head = head[:-1]
    return head + "..." + tail


def _wrap(text: str, width: int, scale: float) -> list[str]:
    """`text` in lines at most `width` wide: broken at spaces, and inside a word too long for a line."""
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if _text_size(candidate, scale)[0] <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        while len(line) > 1 and _text_size(line, scale)[0] > width:
            cut = len(line) - 1
            while cut > 1 and _text_size(line[:cut], scale)[0] > width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    return lines + [line] if line else lines


def worst_panel(image: np.ndarray, target: np.ndarray, pred: np.ndarray, palette: list[list[int]], ignore_index: int,
                class_names: list[str], iou: list[float | None], title: str) -> np.ndarray:
    """Side by side: image | ground truth | prediction | error map, with a header naming each panel.
    The error map focuses on the class with the lowest IoU in this image. Each panel is drawn at panel_size (masks
    nearest-neighbour) centred in a column at least CELL_MIN wide under its header (shortened if too long for the
    column); the title and the legend are wrapped to the figure's width."""
    defined = [(v, c) for c, v in enumerate(iou) if v is not None]
    focus = min(defined)[1] if defined else None
    h, w = panel_size(*image.shape[:2])
    if (h, w) != image.shape[:2]:
        smaller = h < image.shape[0]
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_NEAREST_EXACT)
        target, pred = (_resize_ids(m, h, w) for m in (target, pred))
    gt_rgb = colorize(target, palette, ignore_index)
    unlabelled = target == ignore_index
    gt_rgb[unlabelled] = ignore_checks(target.shape)[unlabelled]
    pred_rgb = colorize(pred, palette, ignore_index)
    errors = error_map(image, target, pred, focus, ignore_index)
    gap, scale, line = 4, 0.4, 18
    cell = max(w, CELL_MIN)
    width = 4 * cell + 3 * gap
    name = class_labels(list(class_names))[focus] if focus is not None else ""
    score = f" ({iou[focus] * 100:.1f})" if focus is not None else ""
    labels = ["image", "ground truth", "prediction", _fit(f"errors: {name}{score}", cell - 4, scale, len(score))]
    legend = (f"error map: red = false positives of {name}, blue = its false negatives, "
              "yellow = other errors; grey checks = ignore" if focus is not None else "error map: yellow = errors; grey checks = ignore")
    titles, legends = _wrap(title, width - 4, scale), _wrap(legend, width - 4, scale)
    header = 4 + line * (len(titles) + 1) + 4
    canvas = np.full((header + h + 6 + line * len(legends), width, 3), 255, np.uint8)
    for k, (panel, label) in enumerate(zip((image, gt_rgb, pred_rgb, errors), labels)):
        x = k * (cell + gap)
        canvas[header:header + h, x + (cell - w) // 2:x + (cell - w) // 2 + w] = panel
        _put(canvas, label, x + (cell - _text_size(label, scale)[0]) // 2, 4 + line * len(titles), scale)
    for i, text in enumerate(titles):
        _put(canvas, text, 2, 4 + line * i, scale)
    for i, text in enumerate(legends):
        _put(canvas, text, 2, header + h + 6 + line * i, scale)
    return canvas


def _resize_ids(ids: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) class ids at (h, w), nearest-neighbour at the output pixels' centres, aligned with the image shrunk
    beside them (OpenCV resizes no 32/64-bit integers: int32/int64 ids go through float64, exact for any id)."""
    if ids.dtype in (np.uint8, np.uint16, np.int16):
        return cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return cv2.resize(ids.astype(np.float64), (w, h), interpolation=cv2.INTER_NEAREST_EXACT).astype(ids.dtype)
