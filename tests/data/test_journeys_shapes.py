"""Whole datasets shaped the way real ones ship (masks as NumPy arrays, JPEG masks throughout), through
`segcli prepare folder` as a new user would run it."""

from __future__ import annotations

import numpy as np
from helpers_data import random_image, write_grey, write_image


def _pairs(tmp_path, rng, count: int = 4, mask_ext: str = ".npy"):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(count):
        write_image(images / f"im{i}.png", random_image(rng, 32, 32))
        ids = np.zeros((32, 32), np.uint8)
        ids[8:24, 8:24] = 1
        if mask_ext == ".npy":
            masks.mkdir(parents=True, exist_ok=True)
            np.save(masks / f"im{i}.npy", ids)
        else:
            write_grey(masks / f"im{i}{mask_ext}", ids * 100)
    return images, masks


def test_masks_saved_as_numpy_arrays_say_so_and_how_to_convert(tmp_path, rng, cli):
    """Masks as .npy files (a common way to ship label arrays) were refused as 'no images found in the masks
    folder', which reads as an empty or wrong folder: the user could not tell that .npy is not read."""
    images, masks = _pairs(tmp_path, rng)
    code, out, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--out", tmp_path / "out")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1 and not out, err
    assert lines[0].startswith(f"segcli: error: {masks}: no images found in the masks folder; it holds 4 .npy file(s)")
    assert "which are not images" in lines[0] and ".png" in lines[0] and "np.load(f)" in lines[0]
    assert not (tmp_path / "out").exists()
    # the same arrays given as the images: no mask advice, but still what the files are
    code, _, err = cli("prepare", "folder", "--images", masks, "--masks", images, "--out", tmp_path / "out")
    assert code == 3 and "it holds 4 .npy file(s), which are not images" in err and "class ids" not in err, err
    # an empty folder stays as it was said
    (tmp_path / "empty").mkdir()
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", tmp_path / "empty", "--out", tmp_path / "out")
    assert code == 3 and err.strip().endswith("no images found in the masks folder"), err


def test_jpeg_masks_throughout_do_not_suggest_keep_going(tmp_path, rng, cli):
    """Every mask a JPEG: each pair is a lossy_mask error, and the failure line ended with '--keep-going drops the
    bad pairs', which would drop every pair and fail again on the empty splits."""
    images, masks = _pairs(tmp_path, rng, mask_ext=".jpg")
    code, out, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--out", tmp_path / "out")
    last = err.strip().splitlines()[-1]
    assert code == 1 and out.strip() == str(tmp_path / "out" / "lint.json"), err
    assert "mask stored as JPEG" in last and "--keep-going drops" not in last, last
    assert last.endswith("every one of the 4 pair(s) has an error, so --keep-going would keep none"), last
    # one JPEG among PNG masks: --keep-going does help there, and is still suggested
    for i in range(1, 4):
        (masks / f"im{i}.jpg").unlink()
        ids = np.zeros((32, 32), np.uint8)
        ids[8:24, 8:24] = 1
        write_grey(masks / f"im{i}.png", ids)
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--out", tmp_path / "out2",
                       "--val-fraction", "0.34")
    assert code == 1 and err.strip().endswith("--keep-going drops the bad pairs"), err


def test_a_suffix_no_mask_has_names_the_suffix_not_the_files(tmp_path, rng, cli):
    """--mask-suffix _mask over masks named like their images: the error said the PNGs 'are not images' and told
    the user to convert them to PNG. It now says no name ends in the suffix, with an example name."""
    images, masks = _pairs(tmp_path, rng, mask_ext=".png")
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--mask-suffix", "_mask",
                       "--out", tmp_path / "out")
    assert code == 3 and err.strip().splitlines() == [
        f"segcli: error: {masks}: none of its 4 image(s) has a name ending in '_mask' (e.g. im0.png); check "
        "--mask-suffix"], err


def test_a_suffix_given_with_its_extension_or_out_of_place(tmp_path, rng, cli):
    """--mask-suffix _mask.png for x_mask.png (the end of the name as the file shows it) found nothing; and
    --mask-suffix mask was told to pair 'a0' with 'a0mask_' by passing 'mask_' (the cut put after the suffix)."""
    images, masks = _pairs(tmp_path, rng, mask_ext="_mask.png")
    for suffix in ("_mask.png", "_mask.PNG"):
        code, _, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--mask-suffix", suffix,
                           "--classes", "a,b", "--remap", "100=1", "--overwrite", "--out", tmp_path / "out")
        assert code == 0, err
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--mask-suffix", "mask",
                       "--classes", "a,b", "--out", tmp_path / "bad")
    assert code == 1 and "(the names pair as 'im0' ↔ 'im0_mask' in 4 case(s): pass --mask-suffix _mask)" in err, err
    assert "--keep-going" not in err  # no pair was formed: it would keep none
