"""Tests for the procedural street-scene dataset (segcli.data.formats.synthetic)."""

import cv2
import numpy as np
import pytest

from segcli.data.formats.synthetic import CLASSES, IGNORE_INDEX, PALETTE, generate, render_scene

POLE, SIGN, VEHICLE = CLASSES.index("pole"), CLASSES.index("sign"), CLASSES.index("vehicle")


@pytest.fixture(scope="module")
def scenes():
    return list(generate(20, seed=0))


def test_class_table():
    assert len(CLASSES) >= 6 and len(set(CLASSES)) == len(CLASSES)
    assert len(PALETTE) == len(CLASSES)
    assert len({tuple(c) for c in PALETTE}) == len(PALETTE)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in PALETTE)
    assert IGNORE_INDEX == 255


def test_shapes_dtypes_and_stems(scenes):
    assert [s for s, _, _ in scenes] == [f"scene_{i:04d}" for i in range(20)]
    for _, image, mask in scenes:
        assert image.shape == (180, 240, 3) and image.dtype == np.uint8
        assert mask.shape == (180, 240) and mask.dtype == np.uint8


def test_mask_values(scenes):
    allowed = set(range(len(CLASSES))) | {IGNORE_INDEX}
    for _, _, mask in scenes:
        assert set(np.unique(mask).tolist()) <= allowed


def test_deterministic_for_seed():
    a, b = list(generate(5, seed=3)), list(generate(5, seed=3))
    for (sa, ia, ma), (sb, ib, mb) in zip(a, b):
        assert sa == sb and ia.tobytes() == ib.tobytes() and ma.tobytes() == mb.tobytes()


def test_different_seeds_differ():
    for (_, ia, ma), (_, ib, mb) in zip(generate(3, seed=0), generate(3, seed=1)):
        assert not np.array_equal(ia, ib) and not np.array_equal(ma, mb)


def test_scenes_within_a_run_differ(scenes):
    assert not np.array_equal(scenes[0][2], scenes[1][2])


def test_prefix_property():
    short, long = list(generate(4, seed=7)), list(generate(9, seed=7))
    assert len(long) == 9
    for (sa, ia, ma), (sb, ib, mb) in zip(short, long[:4]):
        assert sa == sb and np.array_equal(ia, ib) and np.array_equal(ma, mb)


def test_render_scene_is_pure_function_of_rng():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    i1, m1 = render_scene(np.random.default_rng(42), 120, 160)
    i2, m2 = render_scene(np.random.default_rng(42), 120, 160)
    assert np.array_equal(i1, i2) and np.array_equal(m1, m2)
    assert np.array_equal(np.random.get_state()[1], before)  # legacy global state untouched


def test_every_class_appears(scenes):
    present = set()
    for _, _, mask in scenes:
        present |= set(np.unique(mask).tolist())
    assert set(range(len(CLASSES))) <= present


def test_rare_class_is_rare(scenes):
    total = sum(m.size for _, _, m in scenes)
    sign_pixels = sum(int((m == SIGN).sum()) for _, _, m in scenes)
    with_sign = sum(bool((m == SIGN).any()) for _, _, m in scenes)
    assert 0 < sign_pixels / total < 0.02
    assert 0 < with_sign < len(scenes)


def test_ignore_band_is_small_and_near_vehicles(scenes):
    total = sum(m.size for _, _, m in scenes)
    ignored = sum(int((m == IGNORE_INDEX).sum()) for _, _, m in scenes)
    assert 0 < ignored / total < 0.05
    for _, _, mask in scenes:
        near_vehicle = cv2.dilate((mask == VEHICLE).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0  # within 4 px
        assert not ((mask == IGNORE_INDEX) & ~near_vehicle).any()


def test_thin_class_is_thin(scenes):
    kernel = np.ones((5, 5), np.uint8)
    total = eroded = 0
    for _, _, mask in scenes:
        pole = (mask == POLE).astype(np.uint8)
        total += int(pole.sum())
        eroded += int(cv2.erode(pole, kernel).sum())
    assert total > 0
    assert eroded <= 0.01 * total  # no structure is 5 px wide


def test_colour_is_informative_but_not_perfect(scenes):
    # Each class has its own mean colour, but a per-pixel nearest-mean colour classifier is far from perfect.
    x = np.concatenate([im.reshape(-1, 3) for _, im, _ in scenes]).astype(np.float32)
    y = np.concatenate([m.ravel() for _, _, m in scenes])
    keep = y != IGNORE_INDEX
    x, y = x[keep], y[keep]
    means = np.stack([x[y == c].mean(0) for c in range(len(CLASSES))])
    assert min(np.linalg.norm(means[i] - means[j]) for i in range(len(means)) for j in range(i)) > 5
    pred = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert 1.5 / len(CLASSES) < (pred == y).mean() < 0.9


@pytest.mark.parametrize("size", [(97, 131), (32, 32), (64, 300), (300, 64), (257, 513)])
def test_odd_sizes(size):
    h, w = size
    for _, image, mask in generate(3, seed=1, height=h, width=w):
        assert image.shape == (h, w, 3) and mask.shape == (h, w)
        assert set(np.unique(mask).tolist()) <= set(range(len(CLASSES))) | {IGNORE_INDEX}


def test_too_small_raises():
    with pytest.raises(ValueError):
        render_scene(np.random.default_rng(0), 16, 64)


def test_zero_images():
    assert list(generate(0)) == []
