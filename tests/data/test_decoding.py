"""Decoding quirks of real-world image files: what the readers return, and that reading them stays quiet."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers_data import random_image, read_lint
from PIL import Image

from segcli.inference.io import read_image, to_uint8

DEEP_TIFFS = {  # name → (stored array, what read_image gives without an image_range)
    "float_grey": (np.linspace(0, 1, 12 * 16, dtype=np.float32).reshape(12, 16), "grey"),
    "float64_grey": (np.linspace(0, 1, 12 * 16).reshape(12, 16), "grey"),
    "int32_grey": (np.arange(12 * 16, dtype=np.int32).reshape(12, 16), "grey"),
    "float_bgra": (np.random.default_rng(0).random((12, 16, 4), dtype=np.float32), "bgr"),
}


@pytest.mark.parametrize("name", DEEP_TIFFS)
def test_deep_tiffs_opencv_refuses_in_colour_are_read_without_opencv_errors_on_stderr(name, tmp_path, capfd):
    """A one- or four-channel 32/64-bit TIFF (floating point, int32: how numpy, scikit-image and GDAL pipelines
    save images) is read as grey repeated or its first three channels; OpenCV's own '[ERROR] ... can't read data'
    line (its colour decode, which refuses these files) no longer reaches stderr for every file read."""
    stored, kind = DEEP_TIFFS[name]
    path = tmp_path / f"{name}.tif"
    assert cv2.imwrite(str(path), stored)
    capfd.readouterr()
    image = read_image(path)
    assert "ERROR" not in capfd.readouterr().err
    expected = to_uint8(stored)  # grey 0..1 scaled by 255, int32 clipped to 0..255
    expected = np.repeat(expected[..., None], 3, axis=2) if kind == "grey" else expected[..., 2::-1]  # BGRA → RGB
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - expected).max() <= 1


def test_a_mask_carrying_the_photos_exif_rotation_is_named_as_the_cause_of_its_size_mismatch(tmp_path, rng, run_cli):
    """Masks are read as stored, images upright (EXIF applied). A mask saved with the phone photo's EXIF
    orientation (PIL: mask.save(path, exif=photo.getexif())) is shown upright and aligned by every viewer, yet
    does not match: the lint says that the mask's own orientation tag is the cause (it said to rotate the mask)."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to display: stored 30 wide, 20 high; shown 20 wide, 30 high
    for stem in ("a", "b"):
        Image.fromarray(random_image(rng, 20, 30)).save(images / f"{stem}.jpg", exif=exif.tobytes())
        ids = np.zeros((20, 30), np.uint8)
        ids[:, 10:] = 1
        Image.fromarray(ids).save(masks / f"{stem}.png", exif=exif.tobytes())
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                              "--classes", "x,y", "--val-fraction", "0.5")
    assert code == 1, stderr
    findings = [f for f in read_lint(out / "lint.json")["findings"] if f["kind"] == "size_mismatch"]
    assert len(findings) == 2
    for finding in findings:
        assert "the mask carries an EXIF orientation" in finding["detail"] and "shows it 20x30" in finding["detail"]
        assert "rotate the mask too" not in finding["detail"]


def _with_orientation(png: bytes, orientation: int) -> bytes:
    """A PNG with an eXIf chunk (before IDAT) holding `orientation`: what a phone or an editor writes."""
    import struct
    import zlib

    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes().removeprefix(b"Exif\x00\x00")
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk + png[at:]


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_max_size_shrinks_an_rgba_image_the_way_it_is_shown_not_as_stored(tmp_path, run_cli, dtype):
    """--max-size re-encodes a 16-bit or RGBA image from its stored channels, which OpenCV's IMREAD_UNCHANGED decodes
    without the EXIF orientation: an upside-down one (orientation 3) was written unrotated beside its mask, drawn
    (and linted) on the upright view, so every pixel's label landed on the opposite side."""
    top = np.iinfo(dtype).max
    upright = np.zeros((48, 64, 4), dtype)
    upright[:, :32, 0] = top  # upright: left half red, alpha opaque
    upright[..., 3] = top
    ids = np.zeros((48, 64), np.uint8)
    ids[:, :32] = 1  # the mask drawn on the upright view: the red half is class 1
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    stored = np.ascontiguousarray(np.rot90(upright, 2))  # orientation 3: turn 180° to display
    ok, png = cv2.imencode(".png", cv2.cvtColor(stored, cv2.COLOR_RGBA2BGRA))
    for stem in ("a", "b"):
        (images / f"{stem}.png").write_bytes(_with_orientation(png.tobytes(), 3))
        assert cv2.imwrite(str(masks / f"{stem}.png"), ids)
    out = tmp_path / "out"
    code, _, stderr = run_cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out,
                              "--classes", "x,y", "--val-fraction", "0.5", "--max-size", "32")
    assert code == 0, stderr
    for written in (out / "images").rglob("*.png"):
        image = read_image(written)
        mask = cv2.imread(str(out / "masks" / written.relative_to(out / "images")), cv2.IMREAD_UNCHANGED)
        assert image.shape == (24, 32, 3) and mask.shape == (24, 32)
        assert cv2.imread(str(written), cv2.IMREAD_UNCHANGED).shape == (24, 32, 4)  # still every channel
        assert np.array_equal(image[..., 0] > 128, mask == 1)



def _grey_png(path, ids: np.ndarray, bits: int) -> None:
    """Write `ids` as a grey PNG of `bits` bits per pixel (1, 2 or 4), the bytes laid out by hand."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    rows = b"".join(b"\0" + np.packbits(np.unpackbits(row[:, None], axis=1)[:, 8 - bits:].ravel()).tobytes()
                    for row in ids)
    h, w = ids.shape
    header = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([bits, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_low_bit_depth_grey_png_masks_are_read_as_their_stored_ids(bits, tmp_path):
    """A mask or prediction saved from a bool array (PIL's mode '1', a 1-bit PNG) holds 0/1, but OpenCV scales it to
    0/255: `eval --predictions` refused it ('class ids [255] outside 0..2'). 2- and 4-bit grey PNGs likewise."""
    from segcli.inference.io import read_mask

    ids = (np.arange(6 * 8).reshape(6, 8) % 2 ** bits).astype(np.uint8)
    _grey_png(tmp_path / "m.png", ids, bits)
    assert np.array_equal(read_mask(tmp_path / "m.png"), ids)
    Image.fromarray(ids.astype(bool)).save(tmp_path / "pil.png")  # PIL's own 1-bit file
    assert np.array_equal(read_mask(tmp_path / "pil.png"), ids.astype(bool).astype(np.uint8))


MULTIBAND_TIFFS = {  # name → tifffile.imwrite arguments; what OpenCV did with each before
    "gdal_default_lzw": {"photometric": "minisblack", "planarconfig": "contig", "compression": "lzw"},  # 1 channel
    "band_interleaved": {"photometric": "minisblack", "planarconfig": "separate", "compression": "zlib"},  # garbage
    "rgb_band_interleaved": {"photometric": "rgb", "planarconfig": "separate", "extrasamples": [0]},  # garbage
    "six_bands": {"photometric": "minisblack", "planarconfig": "contig", "bands": 6},  # "not a readable image"
}


@pytest.mark.parametrize("name", MULTIBAND_TIFFS)
def test_multiband_tiffs_opencv_misreads_are_read_as_stored(name, tmp_path, rng, run_cli):
    """Multispectral tiles as GDAL and tifffile write them: OpenCV read GDAL's default 4-band layout as one
    channel (train: '1 channel(s), but the model takes 4'), band-interleaved files as garbage that prepare took
    silently, and 6 bands not at all. They are read band for band, and the 3-channel view is the first three."""
    import tifffile

    kwargs = dict(MULTIBAND_TIFFS[name])
    bands = kwargs.pop("bands", 4)
    stored = rng.integers(0, 4096, (24, 40, bands)).astype(np.uint16)
    stored[0, 0, 0] = 4095
    path = tmp_path / "images" / "tile.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, np.moveaxis(stored, -1, 0) if kwargs["planarconfig"] == "separate" else stored, **kwargs)
    expected = to_uint8(stored, [0, 4095])
    assert np.array_equal(read_image(path, channels=bands, value_range=[0, 4095]), expected)
    assert np.array_equal(read_image(path, value_range=[0, 4095]), expected[..., :3])
    cv2.imwrite(str(tmp_path / "images" / "tile2.tif"), stored[..., [2, 1, 0, 3]] if bands == 4 else stored[..., :4])
    for stem in ("tile", "tile2"):
        (tmp_path / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "masks" / f"{stem}.png"), (rng.random((24, 40)) > 0.5).astype(np.uint8))
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--classes", "a,b", "--val-fraction", "0.5", "--out", tmp_path / "out")
    assert code == 0, err
    import yaml

    assert yaml.safe_load((tmp_path / "out" / "dataset.yaml").read_text())["image_range"] == [0.0, 4095.0]



def _tiff(path, stored: np.ndarray, **kwargs) -> None:
    """Write (H, W, C) `stored` with tifffile (band-interleaved when kwargs say planarconfig='separate')."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.moveaxis(stored, -1, 0) if kwargs.get("planarconfig") == "separate" else stored, **kwargs)


BAND_LAYOUTS = {  # name → (bands, tifffile.imwrite arguments); what segcli did with each before
    "bigtiff_gdal_4": (4, {"photometric": "minisblack", "planarconfig": "contig", "bigtiff": True}),  # 1 channel
    "bigtiff_tiled_13": (13, {"photometric": "minisblack", "planarconfig": "separate", "bigtiff": True,
                              "tile": (16, 16), "compression": "zlib"}),  # "not a readable image"
    "two_bands": (2, {"photometric": "minisblack", "planarconfig": "contig", "compression": "lzw",
                      "predictor": True}),  # 1 channel: the second band dropped
    "two_bands_interleaved": (2, {"photometric": "minisblack", "planarconfig": "separate"}),  # exit 4 as RGB
    "zstd_5": (5, {"photometric": "minisblack", "planarconfig": "contig", "compression": "zstd"}),
}


@pytest.mark.parametrize("name", BAND_LAYOUTS)
def test_bigtiff_and_two_band_tiffs_are_read_band_for_band(name, tmp_path, rng):
    """BigTIFF (GDAL's choice for large rasters) was not recognised as a TIFF OpenCV misreads: 4 bands were read as
    one channel, 13 not at all. A 2-band TIFF (SAR VV/VH, NDVI + mask) lost its second band, and band-interleaved it
    stopped a 3-channel read with an OpenCV error (exit 4). Every band is read as tifffile stores it; the 3-channel
    view is the first three bands, or the first band as grey."""
    import tifffile

    bands, kwargs = BAND_LAYOUTS[name]
    stored = rng.integers(0, 4096, (33, 51, bands)).astype(np.uint16)
    path = tmp_path / "t.tif"
    _tiff(path, stored, **kwargs)
    on_disk = tifffile.imread(path)
    assert np.array_equal(np.moveaxis(on_disk, 0, -1) if kwargs["planarconfig"] == "separate" else on_disk, stored)
    expected = to_uint8(stored, [0, 4095])
    assert np.array_equal(read_image(path, channels=bands, value_range=[0, 4095]), expected)
    view = expected[..., :3] if bands >= 3 else np.repeat(expected[..., :1], 3, axis=2)
    assert np.array_equal(read_image(path, value_range=[0, 4095]), view)


@pytest.mark.parametrize("compression", ["zstd", "lzma", "jpeg2000", "png"])
def test_tiffs_in_compressions_opencv_lacks_are_read_not_refused_or_garbled(compression, tmp_path, rng):
    """OpenCV's libtiff refused a ZSTD or LZMA TIFF (GDAL's COG default is ZSTD for many pipelines) as unreadable,
    and decoded a JPEG 2000 or PNG-compressed one into garbage without a word (up to 250 levels off). They are read
    through tifffile + imagecodecs, as tifffile reads them."""
    import tifffile

    stored = rng.integers(0, 256, (32, 40, 3)).astype(np.uint8)
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, stored, photometric="rgb", compression=compression)
    assert np.array_equal(read_image(path), tifffile.imread(path))
    tifffile.imwrite(path, stored[..., 0], photometric="minisblack", compression=compression)
    assert np.array_equal(read_image(path, channels=1), tifffile.imread(path)[..., None])


@pytest.mark.parametrize("fourth", ["random", "zero"])
def test_an_8bit_tiff_with_an_unassociated_alpha_band_is_read_as_stored(fourth, tmp_path, rng):
    """tifffile.imwrite's default for an (H, W, 4) uint8 array is RGB + an unassociated alpha band; OpenCV multiplied
    the colours by that band, so an RGB + near-infrared tile read darkened (up to 251 levels off) and one whose 4th
    band is 0 read all black, in 3 and 4 channels alike. Every band is read as stored, as for a PNG with alpha."""
    import tifffile

    stored = rng.integers(0, 256, (24, 36, 4)).astype(np.uint8)
    if fourth == "zero":
        stored[..., 3] = 0
    tifffile.imwrite(tmp_path / "t.tif", stored)  # photometric RGB, ExtraSamples 2
    assert tifffile.TiffFile(tmp_path / "t.tif").pages.first.extrasamples == (2,)
    assert cv2.imwrite(str(tmp_path / "t.png"), cv2.cvtColor(stored, cv2.COLOR_RGBA2BGRA))
    for channels in (4, 3):
        assert np.array_equal(read_image(tmp_path / "t.tif", channels), stored[..., :channels]), channels
        assert np.array_equal(read_image(tmp_path / "t.png", channels), stored[..., :channels]), channels


def test_a_multiband_tiffs_orientation_tag_turns_it_as_opencv_turns_other_tiffs(tmp_path, rng):
    """OpenCV turns a TIFF by its Orientation tag; the bands read through tifffile were not turned, so the same
    pixels came out rotated as an RGB(+extra) TIFF and upright as a GDAL-style 4-band one (a mask matching one
    mismatched the other). All 8 orientations turn alike."""
    stored = rng.integers(0, 256, (20, 30, 4)).astype(np.uint8)
    for orientation in range(1, 9):
        tag = [(274, 3, 1, orientation, True)]
        _tiff(tmp_path / "rgb.tif", stored, photometric="rgb", extrasamples=[0], extratags=tag)  # OpenCV's decode
        _tiff(tmp_path / "grey.tif", stored, photometric="minisblack", planarconfig="contig", extratags=tag)
        for channels in (3, 4):
            assert np.array_equal(read_image(tmp_path / "grey.tif", channels),
                                  read_image(tmp_path / "rgb.tif", channels)), (orientation, channels)


def test_a_stack_of_five_band_pages_is_linted_as_multi_page(tmp_path, rng, run_cli):
    """OpenCV counts no page in a TIFF whose bands it cannot decode (5 or more), so a stack of such pages (a time
    series of Sentinel tiles) got no multi_page warning: only its first page is read."""
    import tifffile

    for stem in ("a", "b"):
        (tmp_path / "images").mkdir(exist_ok=True)
        with tifffile.TiffWriter(tmp_path / "images" / f"{stem}.tif") as tiff:
            for _ in range(3):
                tiff.write(rng.integers(0, 256, (24, 32, 5)).astype(np.uint8), photometric="minisblack",
                           planarconfig="contig")
        (tmp_path / "masks").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "masks" / f"{stem}.png"), (rng.random((24, 32)) > 0.5).astype(np.uint8))
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--classes", "a,b", "--val-fraction", "0.5", "--out", tmp_path / "out")
    assert code == 0, err
    found = [f for f in read_lint(tmp_path / "out" / "lint.json")["findings"] if f["kind"] == "multi_page"]
    assert len(found) == 2 and all("holds 3 pages" in f["detail"] for f in found)


@pytest.mark.parametrize("bands,dtype", [(2, np.uint8), (2, np.uint16), (5, np.uint8), (6, np.uint16),
                                         (13, np.int16)])
def test_max_size_keeps_every_band_of_two_and_many_band_tiffs(bands, dtype, tmp_path, rng, run_cli):
    """--max-size on 2-band tiles wrote 8-bit ones as RGB (the second band lost, the first tripled) and stopped on
    16-bit ones (exit 4: OpenCV encodes 1, 3 or 4 channels); on 5+ bands of 8-bit or int16 it stopped in OpenCV's
    resize (exit 4: at most 4 channels, unless the factor is a whole number), and on 5+ bands of any depth in OpenCV's
    encoder (exit 4). The shrunk tile keeps every band, in order, at its depth."""
    import tifffile

    low, high = {np.uint8: (0, 255), np.uint16: (0, 4096)}.get(dtype, (-500, 3000))
    stored = rng.integers(low, high, (83, 110, bands)).astype(dtype)
    _tiff(tmp_path / "images" / "t.tif", stored, photometric="minisblack", planarconfig="contig")
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "t.png"), (rng.random((83, 110)) > 0.5).astype(np.uint8))
    code, _, err = run_cli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                           "--classes", "a,b", "--val-fraction", "0", "--max-size", "50", "--out", tmp_path / "out")
    assert code == 0, err
    shrunk = tifffile.imread(tmp_path / "out" / "images" / "train" / "t.tif")
    assert shrunk.shape == (38, 50, bands) and shrunk.dtype == dtype
    for band in range(bands):
        expected = cv2.resize(stored[..., band], (50, 38), interpolation=cv2.INTER_AREA)
        assert np.abs(shrunk[..., band].astype(int) - expected).max() <= 1, band
