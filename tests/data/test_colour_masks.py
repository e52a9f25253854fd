"""RGB colour masks through `prepare folder --palette`: colours stored at other depths, and colours that smoothing
(JPEG, anti-aliasing) moved off the palette."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import yaml
from helpers_data import blocks, random_image, read_lint, write_grey, write_image

PALETTE = "road 128 64 128\ncar 0 0 142\nsky 70 130 180\nignore 0 0 0\n"
COLOURS = np.array([[128, 64, 128], [0, 0, 142], [70, 130, 180], [0, 0, 0]], np.uint8)


def _prepare(tmp_path, run_cli, palette=PALETTE):
    (tmp_path / "palette.txt").write_text(palette)
    return run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                   "--out", tmp_path / "out", "--palette", tmp_path / "palette.txt", "--val-fraction", "0")


@pytest.mark.parametrize("widen", [257, 256])
def test_16_bit_colour_masks_map_like_their_8_bit_colours(tmp_path, rng, run_cli, widen):
    """A colour mask saved at 16 bits (8-bit colours × 257, or shifted up by 8 bits as many converters do): the ×256
    ones were divided by 257 and rounded, so car (0, 0, 142) read as (0, 0, 141) and every mask stopped with
    unknown_colour."""
    truth = {}
    for i in range(3):
        ids = blocks(rng, 20, 30, [0, 1, 2, 3], block=5)
        write_image(tmp_path / "images" / f"f{i}.png", random_image(rng, 20, 30))
        write_image(tmp_path / "masks" / f"f{i}.png", COLOURS[ids].astype(np.uint16) * widen)
        truth[f"f{i}"] = np.where(ids == 3, 255, ids)
    code, _, err = _prepare(tmp_path, run_cli)
    assert code == 0, err
    for stem, ids in truth.items():
        assert np.array_equal(cv2.imread(str(tmp_path / "out" / "masks" / "train" / f"{stem}.png"),
                                         cv2.IMREAD_UNCHANGED), ids)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_black_and_white_masks_map_through_a_black_and_white_palette(tmp_path, rng, run_cli, channels):
    """0/65535 masks (a binary mask exported at 16 bits) with a palette 'background 0 0 0 / defect 255 255 255': the
    8-bit ones map through the palette; these stopped with 'mask values 65535 are neither class ids 0..1 nor the
    ignore index 255'."""
    truth = {}
    for i in range(3):
        ids = blocks(rng, 20, 30, [0, 1], block=5).astype(np.uint16)
        write_image(tmp_path / "images" / f"f{i}.png", random_image(rng, 20, 30))
        mask = ids * 65535
        write_grey(tmp_path / "masks" / f"f{i}.png", mask if channels == 1 else np.repeat(mask[..., None], 3, -1))
        truth[f"f{i}"] = ids
    code, _, err = _prepare(tmp_path, run_cli, "background 0 0 0\ndefect 255 255 255\n")
    assert code == 0, err
    card = yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())
    assert card["classes"] == ["background", "defect"] and card["palette"] == [[0, 0, 0], [255, 255, 255]]
    for stem, ids in truth.items():
        assert np.array_equal(cv2.imread(str(tmp_path / "out" / "masks" / "train" / f"{stem}.png"),
                                         cv2.IMREAD_UNCHANGED), ids)


def test_16_bit_id_masks_stay_ids_beside_a_palette(tmp_path, rng, run_cli):
    """16-bit ids 0..2 beside a palette (0 is its black): read as the ids they are, not as grey colours."""
    truth = {}
    for i in range(2):
        truth[f"f{i}"] = blocks(rng, 20, 30, [0, 1, 2], block=5).astype(np.uint16)
        write_image(tmp_path / "images" / f"f{i}.png", random_image(rng, 20, 30))
        write_grey(tmp_path / "masks" / f"f{i}.png", truth[f"f{i}"])
    code, _, err = _prepare(tmp_path, run_cli)
    assert code == 0, err
    for stem, ids in truth.items():
        assert np.array_equal(cv2.imread(str(tmp_path / "out" / "masks" / "train" / f"{stem}.png"),
                                         cv2.IMREAD_UNCHANGED), ids)


def _jpeg_once(rgb: np.ndarray) -> np.ndarray:
    """A colour mask saved as JPEG once and decoded again (then stored as PNG): colours a few levels off."""
    bgr = cv2.imdecode(cv2.imencode(".jpg", rgb[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])[1], 1)
    return bgr[..., ::-1]


def _anti_aliased(rgb: np.ndarray) -> np.ndarray:
    """A disc of sky drawn on road with anti-aliasing: blends of the two colours along its edge."""
    rgb = np.ascontiguousarray(rgb)
    rgb[:] = COLOURS[0]
    cv2.circle(rgb, (30, 20), 12, tuple(int(c) for c in COLOURS[2]), -1, cv2.LINE_AA)
    return rgb


def _jpeg_flat(rgb: np.ndarray) -> np.ndarray:
    """A mask mostly of one flat colour through JPEG: the whole flat area comes back as one colour a level off."""
    rgb = np.ascontiguousarray(rgb)
    rgb[:] = COLOURS[0]
    rgb[10:30, 20:44] = COLOURS[1]
    return _jpeg_once(rgb)


@pytest.mark.parametrize("smooth", [_jpeg_once, _anti_aliased, _jpeg_flat])
def test_colours_smoothed_off_the_palette_are_named_as_smoothing(tmp_path, rng, run_cli, smooth):
    """Colour masks that passed through JPEG once, or were drawn with anti-aliasing, hold colours 1-3 levels off the
    palette ((0, 0, 2) beside black) or blends along the edges: the finding said 'add them to --palette' (hundreds of
    stray colours, each a class); it names the palette colour each is near and says to re-export without smoothing."""
    for i in range(2):
        write_image(tmp_path / "images" / f"f{i}.png", random_image(rng, 40, 60))
        write_image(tmp_path / "masks" / f"f{i}.png", smooth(COLOURS[blocks(rng, 40, 60, [0, 1, 2, 3], block=10)]))
    code, out, err = _prepare(tmp_path, run_cli)
    assert code == 1
    findings = [f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "unknown_colour"]
    assert len(findings) == 2
    for finding in findings:
        assert "re-export the masks as PNG without smoothing" in finding["detail"]
        assert "level(s) from (" in finding["detail"] or "between (" in finding["detail"]
        assert "add them to --palette" not in finding["detail"]


def test_a_colour_missing_from_the_palette_still_asks_to_add_it(tmp_path, rng, run_cli):
    """A class the palette leaves out (one far-off colour over a whole region) keeps the 'add them' fix."""
    for i in range(2):
        mask = COLOURS[blocks(rng, 20, 30, [0, 1, 2], block=5)]
        mask[:10] = [250, 170, 30]
        write_image(tmp_path / "images" / f"f{i}.png", random_image(rng, 20, 30))
        write_image(tmp_path / "masks" / f"f{i}.png", mask)
    code, _, err = _prepare(tmp_path, run_cli)
    detail = next(f["detail"] for f in read_lint(tmp_path / "out" / "lint.json")["findings"]
                  if f["kind"] == "unknown_colour")
    assert code == 1 and detail.startswith("colours not in the palette: (250, 170, 30) × 300 px, first at x=0 y=0;")
    assert "add them to --palette" in detail and "smoothing" not in detail
    # CamVid's colours sit on a 64-level grid, so a class left out of its palette, Animal (64, 128, 64), lies on the
    # line between Bridge (0, 128, 64) and Misc_Text (128, 128, 64): it was called a blend, and the fix said to
    # re-export the masks without smoothing
    grid = "Road 128 64 128\nSky 128 128 128\nBridge 0 128 64\nMisc_Text 128 128 64\nVoid 0 0 0\n"
    colours = np.array([[128, 64, 128], [128, 128, 128], [0, 128, 64], [128, 128, 64], [64, 128, 64]], np.uint8)
    for i in range(2):
        write_image(tmp_path / "masks" / f"f{i}.png", colours[blocks(rng, 20, 30, [0, 1, 2, 3, 4], block=5)])
    code, _, err = _prepare(tmp_path, run_cli, grid)
    detail = next(f["detail"] for f in read_lint(tmp_path / "out" / "lint.json")["findings"]
                  if f["kind"] == "unknown_colour")
    assert code == 1 and "(64, 128, 64) ×" in detail and "between" not in detail, detail
    assert "add them to --palette" in detail and "smoothing" not in detail


def test_a_palette_of_300_classes_without_ignore_index_names_the_default_it_collides_with(tmp_path, rng, run_cli):
    """300 palette classes: class 255 collides with the default ignore index. The error said '--ignore-index 255 is
    also the id of …', an option the user never gave; it names the default and a value that works, which does."""
    colours = np.array([[i // 256, i % 256, 7] for i in range(300)], np.uint8)
    palette = "".join(f"c{i} {r} {g} {b}\n" for i, (r, g, b) in enumerate(colours))
    truth = rng.integers(0, 300, (20, 30))
    write_image(tmp_path / "images" / "f0.png", random_image(rng, 20, 30))
    write_image(tmp_path / "masks" / "f0.png", colours[truth])
    code, out, err = _prepare(tmp_path, run_cli, palette)
    assert code == 2 and out == "" and not (tmp_path / "out").exists()
    assert err.strip() == ("segcli: error: --ignore-index: the default 255 is also the id of class 'c255' (300 "
                           "classes); pass a value >= 300, e.g. --ignore-index 65535")
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--out", tmp_path / "out", "--palette", tmp_path / "palette.txt", "--val-fraction", "0",
                           "--ignore-index", "65535")
    assert code == 0, err
    written = cv2.imread(str(tmp_path / "out" / "masks" / "train" / "f0.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and np.array_equal(written, truth)
    assert yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())["ignore_index"] == 65535


def test_palette_lines_that_start_with_an_id(tmp_path, rng, run_cli):
    """'0 road 128 64 128 … 255 void 0 0 0' prepared with exit 0 as classes '0 road', '1 car', '2 sky' and
    '255 void': void became a class instead of the ignore colour. The ids are now read off, and ids that do not
    give the line's position are refused, naming the line."""
    for i in range(2):
        ids = blocks(rng, 20, 30, [0, 1, 2, 3], block=5)
        write_image(tmp_path / "images" / f"f{i}.png", random_image(rng, 20, 30))
        write_image(tmp_path / "masks" / f"f{i}.png", COLOURS[ids])
    code, _, err = _prepare(tmp_path, run_cli, "0 road 128 64 128\n1 car 0 0 142\n2 sky 70 130 180\n255 void 0 0 0\n")
    assert code == 0, err
    card = yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())
    assert card["classes"] == ["road", "car", "sky"] and card["ignore_index"] == 255
    shutil.rmtree(tmp_path / "out")
    code, _, err = _prepare(tmp_path, run_cli, "id,name,r,g,b\n0,road,128,64,128\n1,car,0,0,142\n2,sky,70,130,180\n"
                                               "255,void,0,0,0\n")  # the same as a CSV with its header line
    assert code == 0, err
    card = yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())
    assert card["classes"] == ["road", "car", "sky"] and card["ignore_index"] == 255
    shutil.rmtree(tmp_path / "out")
    code, _, err = _prepare(tmp_path, run_cli, "1 road 128 64 128\n2 car 0 0 142\n3 sky 70 130 180\n")
    assert code == 2 and "palette.txt:1: '1 road 128 64 128' gives class 'road' the id 1" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_palette_png_using_an_index_its_colour_table_lacks(tmp_path, rng, run_cli):
    """An indexed mask whose pixels use index 3 while its table lists 3 colours: the pixel was read as black, here
    the ignore colour, so a quarter of the labels were silently dropped. It is now an `unreadable` finding."""
    from PIL import Image

    for i in range(2):
        ids = blocks(rng, 20, 30, [0, 1, 2, 3], block=5)
        write_image(tmp_path / "images" / f"f{i}.png", random_image(rng, 20, 30))
        (tmp_path / "masks").mkdir(exist_ok=True)
        png = Image.fromarray(ids.astype(np.uint8), "P")
        png.putpalette(COLOURS[:3].ravel().tolist())  # road, car, sky: no entry for index 3
        png.save(tmp_path / "masks" / f"f{i}.png")
    code, _, err = _prepare(tmp_path, run_cli)
    assert code == 1 and not (tmp_path / "out" / "dataset.yaml").exists(), err
    finding = next(f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "unreadable")
    assert "uses index 3, but its colour table lists 3 colour(s)" in finding["detail"]


def test_cvat_labelmap_as_palette(tmp_path, rng, run_cli):
    """CVAT's segmentation mask export ships its classes as labelmap.txt ('road:128,64,128::'), which --palette
    refused ('cannot read'); it is read as the palette it is."""
    truth = {}
    for i in range(2):
        ids = blocks(rng, 20, 30, [0, 1, 2], block=5)
        write_image(tmp_path / "images" / f"f{i}.png", random_image(rng, 20, 30))
        write_image(tmp_path / "masks" / f"f{i}.png", COLOURS[ids])
        truth[f"f{i}"] = ids
    code, _, err = _prepare(tmp_path, run_cli, "# label:color_rgb:parts:actions\nroad:128,64,128::\n"
                                               "car:0,0,142:wheel,door:\ntraffic sky:70,130,180::\n")
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())["classes"] == ["road", "car", "traffic sky"]
    for stem, ids in truth.items():
        assert np.array_equal(cv2.imread(str(tmp_path / "out" / "masks" / "train" / f"{stem}.png"),
                                         cv2.IMREAD_UNCHANGED), ids)


@pytest.mark.parametrize("lines", [["background 0 0 0 255", "road 128 64 128 255", "building 70 70 70 255"],
                                   ["background,0,0,0,1", "road,128,64,128,1", "building,70,70,70,1"],
                                   # a transparent void (alpha 0), or a void line without the alpha, beside them
                                   ["void 0 0 0 0", "road 128 64 128 255", "car 0 0 142 255", "sky 70 130 180 255"],
                                   ["road 128 64 128 255", "car 0 0 142 255", "void 0 0 0"]])
def test_a_palette_with_a_fourth_number_on_every_line_is_refused(tmp_path, lines):
    """RGBA lines (or a column without a header) read as 'background 0' coloured (0, 0, 255): exit 1, the lint
    blaming the masks for colours (0, 0, 0) that the file names."""
    from segcli.data.palette import parse_palette
    from segcli.errors import ConfigError

    (tmp_path / "palette.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"its lines end in four numbers, the last [\d or]+ \(R G B A\?\)"):
        parse_palette(tmp_path / "palette.txt")


def test_names_ending_in_a_number_still_read_beside_the_alpha_check(tmp_path):
    from segcli.data.palette import parse_palette

    (tmp_path / "palette.txt").write_text("lane 1 0 0 200\nlane 2 0 255 10\n")
    assert parse_palette(tmp_path / "palette.txt").classes == ["lane 1", "lane 2"]
    (tmp_path / "palette.txt").write_text("'lane 1' 0 0 255\n'lane 2' 0 9 255\n")
    palette = parse_palette(tmp_path / "palette.txt")
    assert palette.classes == ["lane 1", "lane 2"] and palette.colours == [[0, 0, 255], [0, 9, 255]]
