"""Scientific rasters: floating-point images with NaN/inf no-data pixels, signed values, constant channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from helpers_data import blocks, write_grey, write_image


def _folder(root: Path, rng, images: dict[str, np.ndarray]) -> list:
    """images/STEM.tif|png (as given) + one-block masks; → prepare folder args (2 classes, half the pairs in val)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, array in images.items():
        if name.endswith(".tif"):
            many = array.ndim == 3 and array.shape[2] > 3  # GDAL's layout for 4+ bands
            layout = {"photometric": "minisblack", "planarconfig": "contig"} if many else {}
            tifffile.imwrite(root / "images" / name, array, **layout)
        else:
            write_image(root / "images" / name, array)
        write_grey(root / "masks" / f"{Path(name).stem}.png", blocks(rng, *array.shape[:2], [0, 1], block=8).astype(np.uint8))
    return ["prepare", "folder", "--images", root / "images", "--masks", root / "masks", "--classes", "a,b",
            "--val-fraction", "0.5"]


def _empty_last_band(rng, bands: int, extension: str) -> dict[str, np.ndarray]:
    """4 random 8-bit images of `bands` bands whose last band is 0 everywhere, named b<i>.<extension>."""
    images = {}
    for i in range(4):
        image = rng.integers(0, 256, (32, 48, bands)).astype(np.uint8)
        image[..., -1] = 0
        images[f"b{i}.{extension}"] = image
    return images


def test_no_data_pixels_read_at_the_ends_of_the_range(tmp_path):
    """NaN and -inf read as the range's low end (0), +inf as its high end (255), with or without an image_range: a
    0..1 float image with one +inf row was clipped as if it were 0..255 (all but black), and NaN read as the stored
    value 0, mid-grey in a signed range."""
    from segcli.inference.io import read_image

    unit = np.linspace(0, 1, 16 * 24, dtype=np.float32).reshape(16, 24)
    unit[0], unit[1], unit[2] = np.inf, np.nan, -np.inf
    tifffile.imwrite(tmp_path / "unit.tif", unit)
    read = read_image(tmp_path / "unit.tif")[..., 0]  # a model of 8-bit data: no image_range
    assert (read[0] == 255).all() and (read[1:3] == 0).all()
    assert np.abs(read[3:].astype(int) - np.round(unit[3:] * 255)).max() <= 1 and read[-1, -1] == 255
    dem = np.linspace(-100, 200, 16 * 24, dtype=np.float32).reshape(16, 24)
    dem[0], dem[1], dem[2] = np.nan, -np.inf, np.inf
    tifffile.imwrite(tmp_path / "dem.tif", dem)
    for channels in (3, 1):
        read = read_image(tmp_path / "dem.tif", channels, value_range=[-100, 200])[..., 0]
        assert (read[:2] == 0).all() and (read[2] == 255).all(), channels
        assert np.abs(read[3:].astype(int) - np.round((dem[3:] + 100) * 255 / 300)).max() <= 1


def test_card_stats_of_images_with_inf_pixels_stay_in_range(tmp_path, rng, run_cli):
    """±inf pixels (no data) do not reach the card's stats as ±3.4e38: its mean/std stay those of the images as they
    are read (the std was 4e35, which normalised every image to zero)."""
    from segcli.inference.io import read_image

    images = {}
    for i in range(4):
        dem = rng.uniform(-50, 400, (32, 48)).astype(np.float32)
        dem[:2], dem[-2:], dem[5, :6] = np.inf, -np.inf, np.nan
        images[f"t{i}.tif"] = dem
    code, _, stderr = run_cli(*_folder(tmp_path / "a", rng, images), "--out", tmp_path / "out")
    card = yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())
    assert code == 0, stderr
    low, high = card["image_range"]
    assert -50 <= low < -40 and 390 < high <= 400
    train = [read_image(tmp_path / "out" / e["image"], value_range=card["image_range"]) for e in card["splits"]["train"]]
    read = np.stack(train).astype(np.float64) / 255
    for stats in (card["stats"], card["stats"]["splits"]["train"]):
        assert np.all(np.isfinite(stats["mean"] + stats["std"]))
        assert np.abs(np.array(stats["mean"]) - read.mean()).max() < 0.05, stats
        assert np.abs(np.array(stats["std"]) - read.std()).max() < 0.05, stats


def test_a_constant_channel_is_not_normalised_by_a_zero_std(tmp_path, rng, run_cli):
    """A channel that is the same in every train image (a 2-band image saved as RGB with an empty third channel)
    gets the normalisation std of one grey level, not 1e-6 (contrast jitter then fed it to the network as values of
    1e5: a smoke run reached val mIoU 22 against 74); the splits' own figures keep the std measured."""
    code, _, stderr = run_cli(*_folder(tmp_path / "a", rng, _empty_last_band(rng, 3, "png")), "--out", tmp_path / "out")
    stats = yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())["stats"]
    assert code == 0, stderr
    assert stats["mean"][2] == 0 and stats["std"][2] == round(1 / 255, 6)
    assert 0.2 < stats["std"][0] < 0.4 and stats["std"][:2] == stats["splits"]["train"]["std"][:2]
    assert stats["splits"]["train"]["std"][2] < 1e-5
    # a card written before the floor (std 1e-06) gets it too where training and inference take it from
    from segcli.data.card import load_card
    from segcli.runs import model_meta

    card = load_card(tmp_path / "out")
    card.stats["std"][2] = 1e-06
    assert model_meta(card, {}, 32, "val")["std"] == [*stats["std"][:2], round(1 / 255, 6)]


def test_a_constant_band_of_a_multiband_model_gets_the_std_floor(tmp_path, rng, run_cli):
    """model.in_channels != 3 measures its own per-band stats: an empty 4th band (all zeros) got std 1e-6 there too."""
    from segcli.data.card import load_card
    from segcli.data.channels import channel_stats
    from segcli.data.stats import MIN_STD

    code, _, stderr = run_cli(*_folder(tmp_path / "a", rng, _empty_last_band(rng, 4, "tif")), "--out", tmp_path / "out")
    assert code == 0, stderr
    mean, std = channel_stats(load_card(tmp_path / "out"), "train", 4)
    assert mean[3] == 0 and std[3] == MIN_STD and all(0.2 < s < 0.4 for s in std[:3]), (mean, std)


def test_per_band_stats_of_a_large_split_come_from_all_of_it(tmp_path, run_cli):
    """model.in_channels != 3 measures mean/std on up to 256 train images: of 257-511 it took the first 256 in name
    order (frames sorted by sequence or date): a split brightening with its names gave a mean 0.11 too low."""
    import cv2

    from segcli.data.card import load_card
    from segcli.data.channels import channel_stats

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(400):
        assert cv2.imwrite(str(images / f"im{i:03d}.png"), np.full((8, 8), 20 + i // 2, np.uint8))
        assert cv2.imwrite(str(masks / f"im{i:03d}.png"), np.eye(8, dtype=np.uint8))
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--classes", "a,b",
                              "--val-fraction", "0.1", "--out", tmp_path / "out")
    assert code == 0, stderr
    card = load_card(tmp_path / "out")
    values = [20 + int(pair["image"][-7:-4]) // 2 for pair in card.splits["train"]]
    mean, std = channel_stats(card, "train", 1)
    assert abs(mean[0] - np.mean(values) / 255) < 0.005 and abs(std[0] - np.std(values) / 255) < 0.005, (mean, std)


def _fill(arrays: list[np.ndarray], value, rows: int) -> list[np.ndarray]:
    for array in arrays:
        array[:rows] = value
    return arrays


@pytest.mark.parametrize("case", ["dem", "unit_float", "uint16_12bit", "uint16_black_background", "ct_padding",
                                  "clean"])
def test_a_no_data_fill_that_stretches_the_range_is_named_with_the_range_to_give(case, rng):
    """A fill value at one end of the values (-9999 around a DEM tile, 65535 in 12-bit data) stretched image_range
    so that the data kept 7 or 16 grey levels, without a word. The lint now names it and the range without it; a
    fill that leaves the range as it is (a uint16 background of 0, CT's -3024 padding beside -1000..3000) is not."""
    from segcli.data.depth import DepthRange

    arrays, expected = {
        "dem": (_fill([rng.integers(100, 400, (32, 32)).astype(np.int16) for _ in range(4)], -9999, 4), "[100,399]"),
        "unit_float": (_fill([rng.random((32, 32)).astype(np.float32) for _ in range(3)], -9999, 3), "[0,1]"),
        "uint16_12bit": (_fill([rng.integers(0, 4096, (32, 32)).astype(np.uint16) for _ in range(3)], 65535, 2),
                         "[0,4095]"),
        "uint16_black_background": (_fill([rng.integers(1000, 1200, (32, 32)).astype(np.uint16) for _ in range(3)], 0,
                                          10), None),
        "ct_padding": (_fill([rng.integers(-1000, 3000, (32, 32)).astype(np.int16) for _ in range(3)], -3024, 5), None),
        "clean": ([rng.integers(-50, 400, (32, 32)).astype(np.int16) for _ in range(3)], None),
    }[case]
    depth = DepthRange()
    for i, array in enumerate(arrays):
        depth.add(array, f"t{i}.tif")
    said = depth.no_data()
    if expected is None:
        assert said is None, said
    else:
        assert f"prepare again with image_range={expected}" in said and "e.g. t0.tif" in said, said


def test_prepare_warns_of_a_no_data_fill_and_not_once_the_range_is_given(tmp_path, rng, run_cli):
    images = {f"d{i}.tif": _fill([rng.integers(100, 400, (32, 48)).astype(np.int16)], -9999, 3)[0] for i in range(4)}
    args = _folder(tmp_path / "a", rng, images)
    code, _, stderr = run_cli(*args, "--out", tmp_path / "o1")
    findings = yaml.safe_load((tmp_path / "o1" / "lint.json").read_text())["findings"]
    assert code == 0, stderr
    assert [f["kind"] for f in findings] == ["no_data_value"] and "image_range=[100,399]" in findings[0]["detail"]
    code, _, stderr = run_cli(*args, "--out", tmp_path / "o2", "image_range=[100,399]")
    assert code == 0 and "no_data_value" not in stderr, stderr
