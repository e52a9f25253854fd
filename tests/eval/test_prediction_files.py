"""Model-free eval of predictions saved the ways other tools save them: read as `prepare` reads masks (16-bit and
RGBA colours, indexed PNGs whose table reorders the palette, one-channel grey colours, GIFs), or refused with a
one-line error naming the file and the fix (exit 3), never misread."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers_eval import CRAFTED, IG, PALETTE, run_cli, write_card


def _scores(preds, root, capsys) -> tuple:
    """(mIoU, per-class rows) of `eval --predictions PREDS --json -`."""
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, "--json", "-"], capsys)
    assert code == 0, err
    rep = json.loads(out)
    return rep["mIoU"], rep["classes"]


def _predictions(tmp_path, name, save) -> tuple:
    """The crafted predictions (ignore → 0) as ids in DIR 'ids' and through `save(path, ids)` in DIR `name`."""
    from segcli.inference.io import write_png

    ids_dir, other = tmp_path / "ids", tmp_path / name
    for key, (_, pred) in CRAFTED.items():
        pred = np.array(pred, np.uint8)
        pred[pred == IG] = 0
        write_png(ids_dir / f"{key}.png", pred)
        (other / key).parent.mkdir(parents=True, exist_ok=True)
        save(other / f"{key}.png", pred)
    return ids_dir, other


def _bgr(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR if rgb.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)


def _rgba(rgb):
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, rgb.dtype)])


PAL = np.array(PALETTE, np.uint8)
COLOUR_FILES = {  # how tools store a colour prediction in the dataset's palette
    "rgb16_x257": lambda ids: _bgr(PAL[ids].astype(np.uint16) * 257),  # 8-bit colours widened, 255 → 65535
    "rgb16_shift": lambda ids: _bgr(PAL[ids].astype(np.uint16) << 8),  # 255 → 65280
    "rgba8": lambda ids: _bgr(_rgba(PAL[ids])),
    "rgba16": lambda ids: _bgr(_rgba(PAL[ids]).astype(np.uint16) * 257),
}


@pytest.mark.parametrize("kind", sorted(COLOUR_FILES))
def test_16_bit_and_rgba_colour_predictions_score_as_their_ids(crafted, tmp_path, capsys, kind):
    """16-bit colour predictions were refused ('prediction has 3 different colour channels but class ids are
    expected; ... convert colours with a palette', exit 3) though the dataset has that palette and prepare reads
    such masks through it."""
    root, _ = crafted
    ids_dir, colour_dir = _predictions(tmp_path, kind, lambda p, ids: cv2.imwrite(str(p), COLOUR_FILES[kind](ids)))
    assert _scores(colour_dir, root, capsys) == _scores(ids_dir, root, capsys)


def _indexed(path, indices, table):
    image = Image.fromarray(indices.astype(np.uint8), "P")
    image.putpalette([v for colour in table for v in colour])
    image.save(path)


ORDER = [3, 0, 4, 1, 2]  # the table's colours: palette[3], palette[0], …: class k's colour at index ORDER.index(k)


def test_indexed_predictions_whose_table_reorders_the_palette_are_read_by_colour(crafted, tmp_path, capsys):
    """An indexed PNG whose colour table holds the palette's colours in another order (a PNG optimiser, a tool's own
    quantisation) was read by its indices: mIoU 0.0, exit 0. Ids with the card's table (predict --palette-png) or with
    another palette's colours are still read as ids."""
    root, _ = crafted
    at = np.argsort(ORDER)  # class id → index
    ids_dir, reordered = _predictions(tmp_path, "reordered",
                                      lambda p, ids: _indexed(p, at[ids], [PALETTE[k] for k in ORDER]))
    expected = _scores(ids_dir, root, capsys)
    assert _scores(reordered, root, capsys) == expected
    voc = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    for name, table in (("cards", PALETTE), ("voc", voc), ("grey", [[i, i, i] for i in range(256)])):
        _, folder = _predictions(tmp_path, name, lambda p, ids: _indexed(p, ids, table))
        assert _scores(folder, root, capsys) == expected, name
    _, gif = _predictions(tmp_path, "gif", lambda p, ids: Image.fromarray(at[ids].astype(np.uint8), "P").save(
        p, format="GIF", palette=bytes(v for k in ORDER for v in PALETTE[k])))
    assert _scores(gif, root, capsys) == expected  # was 'not a readable image' (OpenCV's GIF reader)


def test_indexed_prediction_past_its_table_is_an_error(crafted, tmp_path, capsys):
    """A table cut short (3 colours) that reorders the palette, with pixels at indices 3 and 4: read as ids, silently
    (mIoU 0.0, exit 0)."""
    root, _ = crafted
    at = np.argsort(ORDER)
    _, cut = _predictions(tmp_path, "cut", lambda p, ids: _indexed(p, at[ids], [PALETTE[k] for k in ORDER][:3]))
    code, _, err = run_cli(["eval", "--predictions", cut, "--data", root], capsys)
    assert code == 3 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("segcli: error: ") and ".png: indexed prediction uses index" in line
    assert "colour table lists 3 colour(s)" in line and "re-save it with every colour it uses" in line


def test_one_channel_grey_colours_of_a_black_and_white_palette(tmp_path, capsys):
    """A binary tool's 0/255 (8-bit) or 0/65535 (16-bit) one-channel prediction for a palette of black and white: 255
    was read as the ignore index, so every defect pixel failed ('pred contains class ids [255]'), and 65535 likewise."""
    from segcli.inference.io import write_png

    root = tmp_path / "data"
    gt = np.zeros((4, 6), np.uint8)
    gt[:, 3:] = 1
    gt[0, 0] = IG
    write_png(root / "images" / "val" / "a.png", np.zeros((4, 6, 3), np.uint8))
    write_png(root / "masks" / "val" / "a.png", gt)
    write_card(root, "bin", ["background", "defect"], [[0, 0, 0], [255, 255, 255]],
               {"val": [{"image": "images/val/a.png", "mask": "masks/val/a.png"}]})
    ids = np.where(gt == 1, 1, 0).astype(np.uint8)
    for name, values in (("ids", ids), ("grey8", ids * 255), ("grey16", ids.astype(np.uint16) * 65535)):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "a.png"), values)
        code, out, err = run_cli(["eval", "--predictions", tmp_path / name, "--data", root, "--json", "-"], capsys)
        assert code == 0, (name, err)
        assert json.loads(out)["mIoU"] == 1.0, name


def test_jpeg_predictions_are_refused_naming_the_file(crafted, tmp_path, capsys):
    """A JPEG prediction named .png was scored (its blurred edges read as other classes) or refused with 'pred
    contains class ids [5]'; a.jpg or a.tif beside a missing a.png gave only 'prediction missing'."""
    root, _ = crafted
    _, jpeg = _predictions(tmp_path, "jpeg", lambda p, ids: p.write_bytes(cv2.imencode(".jpg", _bgr(PAL[ids]))[1]))
    code, _, err = run_cli(["eval", "--predictions", jpeg, "--data", root], capsys)
    line = err.strip().splitlines()[-1]
    assert code == 3 and line.startswith("segcli: error: ") and "prediction stored as JPEG" in line
    assert "save it as PNG" in line
    for suffix in (".jpg", ".tif"):
        _, other = _predictions(tmp_path, suffix[1:], lambda p, ids: cv2.imwrite(str(p.with_suffix(suffix)), ids))
        code, _, err = run_cli(["eval", "--predictions", other, "--data", root], capsys)
        line = err.strip().splitlines()[-1]
        assert code == 3 and f"but a{suffix} is there" in line and "convert it to a PNG" in line, line


def test_a_binary_tools_0_255_prediction_for_a_coloured_two_class_palette_says_so(tmp_path, capsys):
    """With a palette that is not black and white, 255 cannot be read as class 1: the error said only 'pred contains
    class ids [255] outside 0..1', not that the file is a 0/255 mask to save as 0/1."""
    from segcli.inference.io import write_png

    root = tmp_path / "data"
    gt = np.zeros((4, 6), np.uint8)
    gt[:, 3:] = 1
    write_png(root / "images" / "val" / "a.png", np.zeros((4, 6, 3), np.uint8))
    write_png(root / "masks" / "val" / "a.png", gt)
    write_card(root, "bin", ["background", "crack"], [[0, 0, 0], [128, 0, 0]],
               {"val": [{"image": "images/val/a.png", "mask": "masks/val/a.png"}]})
    (tmp_path / "preds").mkdir()
    cv2.imwrite(str(tmp_path / "preds" / "a.png"), gt * 255)
    code, out, err = run_cli(["eval", "--predictions", tmp_path / "preds", "--data", root], capsys)
    line = err.strip().splitlines()[-1]
    assert code == 3 and out == "" and line.startswith(f"segcli: error: {tmp_path / 'preds' / 'a.png'}: ")
    assert line.endswith("it is a 0/255 mask: save 0 and 1 instead (mask // 255)"), line


def test_two_predictions_of_one_image_are_refused_naming_both(crafted, tmp_path, capsys):
    """DIR/<key>.png and DIR/val/<key>.png (predict of one split, then of the whole images/ tree, into one --out):
    each image took whichever came first, so one report scored two runs' masks, exit 0 and not a word."""
    import shutil

    root, _ = crafted
    ids_dir, _ = _predictions(tmp_path, "unused", lambda p, ids: None)
    alone, _ = _scores(ids_dir, root, capsys)
    key = sorted(CRAFTED)[0]
    (ids_dir / "val" / key).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ids_dir / f"{key}.png", ids_dir / "val" / f"{key}.png")
    code, out, err = run_cli(["eval", "--predictions", ids_dir, "--data", root, "--json", "-"], capsys)
    line = err.strip().splitlines()[-1]
    assert code == 3 and out == "", err
    assert f"two predictions of image val/{key}: {ids_dir / f'{key}.png'} and {ids_dir / 'val' / f'{key}.png'}" in line
    (ids_dir / f"{key}.png").unlink()  # one left: scored as before
    assert _scores(ids_dir, root, capsys)[0] == alone
