"""Procedural, deterministic street-scene dataset for semantic segmentation.

Used as segcli's built-in demo dataset and in tests. Each scene has a sky,
a perspective road over a sidewalk/terrain ground, blocky buildings with window
grids, textured vegetation blobs, vehicles with wheels, thin poles (2-4 px) and
a rare "sign" class (small shapes on poles, in roughly 40% of images).
Per-class texture noise, a low-frequency shading field, global brightness/tint
changes and gaussian noise make colour alone an imperfect (but useful) cue.
A 2 px band around vehicles is labelled ``IGNORE_INDEX`` (annotation uncertainty).

Everything is drawn with vectorised numpy/cv2 calls and depends only on the
``np.random.Generator`` passed in (no global random state).
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

CLASSES: list[str] = ["background", "road", "building", "vegetation", "vehicle", "pole", "sign"]
PALETTE: list[list[int]] = [
    [70, 130, 180], [128, 64, 128], [70, 70, 70], [107, 142, 35],
    [0, 0, 142], [153, 153, 153], [220, 220, 0],
]
IGNORE_INDEX: int = 255

BG, ROAD, BUILDING, VEG, VEHICLE, POLE, SIGN = range(7)
_TEXTURE = np.full(256, 4.0, np.float32)  # luminance-noise amplitude per label value
_TEXTURE[:7] = [3.0, 9.0, 6.0, 22.0, 4.0, 3.0, 2.0]
_BUILDING_TONES = np.array([[125, 112, 100], [150, 142, 132], [120, 78, 64], [172, 162, 148], [98, 98, 104]], float)
_VEHICLE_TONES = np.array([[225, 225, 230], [170, 172, 178], [35, 35, 40], [140, 25, 30], [30, 45, 130]], float)
_SIGN_TONES = np.array([[215, 30, 30], [30, 80, 200], [240, 200, 20]], float)


def _rect(img, lab, x0, y0, x1, y1, colour, cls=None) -> None:
    """Fill the inclusive box [x0, x1] x [y0, y1] in ``img`` (and ``lab`` if cls given)."""
    p0, p1 = (int(x0), int(y0)), (int(x1), int(y1))
    cv2.rectangle(img, p0, p1, tuple(float(c) for c in colour), -1)
    if cls is not None:
        cv2.rectangle(lab, p0, p1, int(cls), -1)


def _poly(img, lab, pts, colour, cls=None) -> None:
    """Fill polygon ``pts`` ((N, 2) x/y) in ``img`` (and ``lab`` if cls given)."""
    pts = [np.round(np.asarray(pts, float)).astype(np.int32)]
    cv2.fillPoly(img, pts, tuple(float(c) for c in colour))
    if cls is not None:
        cv2.fillPoly(lab, pts, int(cls))


def _circle(img, lab, cx, cy, r, colour, cls) -> None:
    """Fill a disc of radius ``r`` centred at (cx, cy) in ``img`` and ``lab``."""
    c, r = (int(round(cx)), int(round(cy))), max(1, int(round(r)))
    cv2.circle(img, c, r, tuple(float(v) for v in colour), -1)
    cv2.circle(lab, c, r, int(cls), -1)


def render_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one street scene as a pure function of ``rng``.

    Returns ``(image, mask)``: image is (height, width, 3) uint8 RGB; mask is
    (height, width) uint8 with class ids in ``[0, len(CLASSES))`` or ``IGNORE_INDEX``.
    ``height`` and ``width`` must be >= 32.
    """
    H, W = int(height), int(width)
    if H < 32 or W < 32:
        raise ValueError(f"height and width must be >= 32, got {H}x{W}")
    s = min(H, W) / 180.0  # scale of object sizes relative to the default image
    img = np.empty((H, W, 3), np.float32)
    lab = np.zeros((H, W), np.uint8)  # everything starts as background

    # Sky (vertical gradient) and ground (sidewalk/terrain), both "background".
    hz = int(H * rng.uniform(0.38, 0.55))
    top = rng.uniform([55, 105, 165], [120, 165, 230])
    t = np.linspace(0.0, 1.0, hz, dtype=np.float32)[:, None, None]
    img[:hz] = top * (1 - t) + (top + rng.uniform(25, 60)) * t
    img[hz:] = rng.uniform([150, 138, 112], [190, 180, 160])

    # Buildings along the horizon, with a vectorised window grid.
    x = int(rng.integers(-20, 1) * s)
    while x < W:
        bw = max(6, int(rng.uniform(0.1, 0.3) * W))
        if rng.random() < 0.15:  # gap showing sky
            x += bw // 2
            continue
        x0, x1, y0, y1 = max(x, 0), min(x + bw, W), int(rng.uniform(0.05, 0.75) * hz), hz + int(2 * s)
        img[y0:y1, x0:x1] = _BUILDING_TONES[rng.integers(len(_BUILDING_TONES))] + rng.uniform(-15, 15, 3)
        lab[y0:y1, x0:x1] = BUILDING
        px, py = max(4, int(rng.uniform(6, 11) * s)), max(4, int(rng.uniform(7, 12) * s))
        wx, wy = (np.arange(x0, x1) - x + 2) % px < px // 2, (np.arange(y0, y1) - y0 - 2) % py < py // 2
        win = wy[:, None] & wx[None, :]
        win[-max(2, int(4 * s)):] = False
        lit = rng.random() < 0.3
        lo, hi = ([190, 175, 100], [235, 215, 150]) if lit else ([30, 40, 55], [70, 85, 110])
        img[y0:y1, x0:x1][win] = rng.uniform(lo, hi)
        x += bw

    # Trees (trunk + crown of green discs) and hedges near the horizon.
    for _ in range(int(rng.integers(1, 5))):
        r, cx = rng.uniform(0.05, 0.13) * H, rng.uniform(0, W)
        yb = hz + rng.uniform(0, 0.12) * (H - hz)
        cy = yb - rng.uniform(0.8, 2.2) * r
        tw = max(3, int(0.2 * r))
        _rect(img, lab, cx - tw // 2, cy, cx - tw // 2 + tw - 1, yb, rng.uniform([70, 50, 30], [110, 80, 50]), VEG)
        green = rng.uniform([40, 85, 25], [90, 140, 60])
        for _ in range(int(rng.integers(6, 13))):
            off = rng.normal(0, 0.45 * r, 2)
            rr = r * rng.uniform(0.35, 0.7)
            _circle(img, lab, cx + off[0], cy + off[1] * 0.8, rr, green + rng.uniform(-25, 25, 3), VEG)
    for _ in range(int(rng.integers(0, 3))):
        x0, n, r = rng.uniform(-0.1, 0.9) * W, int(rng.integers(4, 10)), rng.uniform(4, 9) * s
        green = rng.uniform([45, 95, 30], [95, 145, 60])
        for k in range(n):
            cy, rr = hz + rng.uniform(-0.5, 1.0) * r, r * rng.uniform(0.7, 1.2)
            _circle(img, lab, x0 + k * r * 1.2, cy, rr, green + rng.uniform(-25, 25, 3), VEG)

    # Perspective road with dashed centre markings (markings stay labelled road).
    vx, tw = rng.uniform(0.35, 0.65) * W, rng.uniform(0.03, 0.08) * W
    xl, xr = rng.uniform(-0.3, 0.15) * W, rng.uniform(0.85, 1.3) * W
    grey = rng.uniform(75, 115) + rng.uniform(-6, 6, 3)
    _poly(img, lab, [(vx - tw, hz), (vx + tw, hz), (xr, H), (xl, H)], grey, ROAD)

    def road_at(y: float) -> tuple[float, float]:
        f = (y - hz) / (H - hz)
        return vx - tw + (xl - vx + tw) * f, vx + tw + (xr - vx - tw) * f

    mark = rng.uniform(200, 235, 3)
    for d in np.arange(0.05, 1.0, 0.16):
        ts = np.array([d, d + 0.08]) ** 1.3
        ys = hz + ts * (H - hz)
        xs = vx + ((xl + xr) / 2 - vx) * ts
        hw = 0.5 + ts * 3 * s
        quad = [(xs[0] - hw[0], ys[0]), (xs[0] + hw[0], ys[0]), (xs[1] + hw[1], ys[1]), (xs[1] - hw[1], ys[1])]
        _poly(img, None, quad, mark)

    # Vehicles, far to near, scaled by distance below the horizon.
    for f in np.sort(rng.uniform(0.15, 0.95, int(rng.integers(0, 4)))):
        yb = hz + f * (H - hz)
        left, right = road_at(yb)
        w = max(10 * s, (right - left) * rng.uniform(0.22, 0.35))
        h = w * rng.uniform(0.45, 0.65)
        xc = np.clip(rng.uniform(left + w / 2, right - w / 2), w / 2, W - w / 2)
        body = _VEHICLE_TONES[rng.integers(len(_VEHICLE_TONES))] + rng.uniform(-12, 12, 3)
        _poly(img, lab, [(xc - 0.32 * w, yb - 0.58 * h), (xc + 0.28 * w, yb - 0.58 * h),
                         (xc + 0.2 * w, yb - h), (xc - 0.22 * w, yb - h)], body, VEHICLE)
        glass = rng.uniform([40, 55, 70], [90, 110, 130])
        _poly(img, None, [(xc - 0.26 * w, yb - 0.62 * h), (xc + 0.22 * w, yb - 0.62 * h),
                          (xc + 0.16 * w, yb - 0.92 * h), (xc - 0.18 * w, yb - 0.92 * h)], glass)
        _rect(img, lab, xc - w / 2, yb - 0.6 * h, xc + w / 2, yb - 0.15 * h, body, VEHICLE)
        for sx in (-0.3, 0.3):
            _circle(img, lab, xc + sx * w, yb - 0.17 * h, 0.17 * h, (22, 22, 24), VEHICLE)

    # Poles (2-4 px wide, optional lamp arm) on the sidewalk; signs on some of them.
    n_sign = int(rng.random() < 0.4) * int(rng.integers(1, 3))
    poles: list[tuple[int, int, int, int]] = []
    for i in range(max(int(rng.integers(0, 3)), n_sign)):
        yb = hz + rng.uniform(0.1, 0.95) * (H - hz)
        left, right = road_at(yb)
        on_left = (i + int(rng.integers(2))) % 2
        x = int(left - rng.uniform(3, 20) * s) if on_left else int(right + rng.uniform(3, 20) * s)
        pw = int(rng.integers(2, 5))
        if not 1 <= x <= W - pw - 1 or any(abs(x - p[0]) < 10 for p in poles):
            x = int(rng.integers(1, W - pw))
            if any(abs(x - p[0]) < 10 for p in poles):
                continue
        y0 = int(max(0, yb - rng.uniform(0.45, 0.85) * H))
        grey = rng.uniform(95, 160) + rng.uniform(-8, 8, 3)
        _rect(img, lab, x, y0, x + pw - 1, yb, grey, POLE)
        if rng.random() < 0.4:  # lamp arm towards the road
            arm = int(rng.uniform(0.05, 0.12) * W) * (1 if x < vx else -1)
            _rect(img, lab, x, y0, x + arm, y0 + 1, grey, POLE)
        poles.append((x, pw, y0, int(yb)))
    for x, pw, y0, yb in poles[:n_sign]:
        r, cx, cy = max(3.0, rng.uniform(4, 7) * s), x + pw / 2, y0 + rng.uniform(0.15, 0.45) * (yb - y0)
        colour, shape = _SIGN_TONES[rng.integers(len(_SIGN_TONES))] + rng.uniform(-10, 10, 3), rng.integers(3)
        if shape == 0:
            _circle(img, lab, cx, cy, r, colour, SIGN)
        elif shape == 1:
            _poly(img, lab, [(cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r), (cx, cy - r)], colour, SIGN)
        else:
            _rect(img, lab, cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r, colour, SIGN)

    # Ignore band: 1 px inside + 1 px outside every vehicle boundary.
    veh = (lab == VEHICLE).astype(np.uint8)
    if veh.any():
        k = np.ones((3, 3), np.uint8)
        lab[cv2.dilate(veh, k) != cv2.erode(veh, k)] = IGNORE_INDEX

    # Texture, smooth shading, global brightness/tint, sensor noise.
    tex = cv2.GaussianBlur(rng.standard_normal((H, W), dtype=np.float32), (3, 3), 0.7) * 1.6
    img += (_TEXTURE[lab] * tex)[..., None]
    shade = cv2.resize(rng.uniform(0.85, 1.15, (3, 4)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    img *= shade[..., None] * (rng.uniform(0.7, 1.2) * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    img += rng.standard_normal((H, W, 3), dtype=np.float32) * 3.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), lab


def generate(
    num_images: int, seed: int = 0, height: int = 180, width: int = 240
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(stem, image, mask)`` for ``num_images`` scenes named ``scene_0000``, ``scene_0001``, ...

    image: (height, width, 3) uint8 RGB; mask: (height, width) uint8 (class ids or IGNORE_INDEX).
    Scene ``i`` depends only on ``(seed, i)`` via ``np.random.default_rng([seed, i])``, so output is
    byte-identical for a seed and a longer run extends a shorter one. ``seed`` must be >= 0.
    """
    if num_images < 0 or seed < 0:
        raise ValueError("num_images and seed must be >= 0")
    for i in range(int(num_images)):
        image, mask = render_scene(np.random.default_rng([int(seed), i]), height, width)
        yield f"scene_{i:04d}", image, mask
