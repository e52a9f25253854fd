"""Reading images and masks, and writing outputs atomically (temp file + rename).

Images are returned as (H, W, 3) uint8 RGB whatever is on disk (grayscale,
RGBA, 16-bit, EXIF-rotated JPEG), or with another channel count on request (read_image(channels=...):
1 = grayscale, C = multispectral as stored); masks as (H, W) integer class ids.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import cv2
import numpy as np

from segcli.errors import DataError, WriteError, exception_chain, stops_held

_UMASK = os.umask(0)
os.umask(_UMASK)
if not os.environ.get("OPENCV_LOG_LEVEL") and os.environ.get("SEGCLI_DEBUG", "") in ("", "0"):
    # OpenCV's own warnings ("[ WARN:0@0.1] global grfmt_tiff.cpp:123 TIFF_Warning ..." for every read of a
    # 4-band TIFF, in libtiff's words) bury segcli's messages; its errors still show. SEGCLI_DEBUG=1 keeps them.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8"


def _read(path: Path) -> np.ndarray:
    """The file's bytes (a uint8 array); a failure is a DataError naming the file."""
    try:
        return np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise DataError(f"{path}: {cannot_read(path, err)}") from None


def cannot_read(path: str | Path, err: OSError) -> str:
    """Why a file could not be opened and what to do: a symbolic link to nothing or in a loop is named as one (its
    'No such file or directory' sent the user looking for a file that `ls` shows)."""
    if os.path.islink(path) and not os.path.exists(path):
        if err.errno == errno.ELOOP:
            return "a symbolic link in a loop (it leads back to itself); point it at the file, or remove it"
        return f"a symbolic link to {os.readlink(path)}, which does not exist; point it at the file, or remove it"
    return f"cannot read file ({err.strerror}); check the path and permissions"


COLOUR = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR  # 3-channel BGR at the depth stored


def read_lines(path: Path, what: str) -> list[str]:
    """The lines of a user's text file (a list of paths, split stems, class names, a palette), as read_text."""
    return read_text(path, what).splitlines()


def read_text(path: Path, what: str) -> str:
    """A user's text file (a dataset card, a list), UTF-8 with or without a byte-order mark; unreadable or not UTF-8
    is a DataError naming the file and `what` it should be."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); save "
                        f"the {what} as UTF-8") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the {what} ({err.strerror}); check the path and permissions") from None


# Compressions OpenCV's libtiff decodes: none, CCITT (2-4), LZW, JPEG, Deflate (8, 32946), PackBits, WebP. It refuses
# others (ZSTD, LZMA, LERC) and decodes some as garbage without a word (JPEG 2000, JPEG XL, PNG, JPEG XR in a TIFF).
OPENCV_TIFF_COMPRESSIONS = {1, 2, 3, 4, 5, 7, 8, 32773, 32946, 50001}


def _opencv_misreads(tags: dict[int, int]) -> bool:
    """A TIFF (its _tiff_tags) whose bands OpenCV does not decode as stored: band-interleaved (PlanarConfiguration 2),
    2 samples per pixel (the second dropped), 5 or more (refused as corrupt), 3 or more under a grey photometric
    (GDAL's default for 4+ bands: decoded as one channel, or as wrong colours), 8-bit samples beside an unassociated
    alpha (ExtraSamples 2, tifffile's default for 4 bands: OpenCV multiplies the colours by it, so a near-infrared 4th
    band darkens them and a zero one blacks them out), or a compression OpenCV lacks (refused, or garbage)."""
    samples = tags.get(277, 1)
    if tags.get(259, 1) not in OPENCV_TIFF_COMPRESSIONS:
        return True
    if tags.get(338) == 2 and tags.get(258, 1) <= 8:
        return True
    return samples > 1 and (tags.get(284, 1) == 2 or samples == 2 or samples > 4
                            or (samples >= 3 and tags.get(262, 1) in (0, 1)))


def _oriented(array: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels turned as an EXIF/TIFF Orientation tag (274) says, as OpenCV turns the files it decodes."""
    turns = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
             7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1], 8: lambda a: np.swapaxes(a, 0, 1)[::-1]}
    return turns[orientation](array) if orientation in turns else array


def exif_orientation(data: bytes | np.ndarray) -> int:
    """The EXIF orientation (1..8) a PNG (eXIf chunk), JPEG (APP1 Exif) or WebP (EXIF chunk) carries; 1 when none
    or unreadable, and for any other file (a TIFF's own tag is applied by every decode). OpenCV turns these three
    formats by it in colour and grey, never under IMREAD_UNCHANGED. PIL parses the tag only when its marker is there."""
    head = bytes(data[:16])
    if head.startswith(PNG_MAGIC):
        marker = b"eXIf"
    elif head.startswith(JPEG_MAGIC):
        marker = b"Exif\x00\x00"
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        marker = b"EXIF"
    else:
        return 1
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if marker not in raw:
        return 1
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as img:
            value = int(img.getexif().get(0x0112, 1))
    except Exception:  # an unreadable tag is no orientation, as for OpenCV
        return 1
    return value if 1 <= value <= 8 else 1


def _tifffile_decode(data: np.ndarray, flags: int) -> np.ndarray | None:
    """Such a TIFF's first page through tifffile, in OpenCV's layout and orientation: (H, W, C), the first three
    bands in B, G, R order (callers turn them back, as for any colour file), the rest as stored; COLOUR keeps those
    three (one or two bands: the first as grey), IMREAD_UNCHANGED gives one band as (H, W). None when it does not
    decode."""
    import tifffile

    page = None
    try:
        with tifffile.TiffFile(io.BytesIO(data.tobytes())) as tiff:
            page = tiff.pages.first
            array = page.asarray()
            if page.planarconfig == 2 and array.ndim == 3 and page.samplesperpixel > 1:
                array = np.moveaxis(array, 0, -1)
            orientation = int(page.tags.valueof(274, 1))
    except Exception as err:  # damaged, truncated, or a compression imagecodecs lacks
        if isinstance(err, ImportError) or "imagecodecs" in str(err):  # a sound file: its codec does not load
            import importlib.util

            from segcli.errors import first_line

            kind = f"{page.compression.name.lower()}-compressed " if page is not None else ""
            if importlib.util.find_spec("imagecodecs") is None:
                raise ModuleNotFoundError(f"No module named 'imagecodecs' ({kind}TIFFs need it)",
                                          name="imagecodecs") from err
            raise ImportError(f"imagecodecs does not decode {kind}TIFFs here ({first_line(err)})",
                              name="imagecodecs") from err  # installed, but broken or built without that codec
        return None
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        return None
    if array.dtype == bool:  # 1-bit, as OpenCV reads it
        array = array.astype(np.uint8) * np.uint8(255)
    array = _oriented(array, orientation)
    if array.shape[2] >= 3:
        array = np.concatenate([array[..., 2::-1], array[..., 3:]], axis=2)
    if flags == COLOUR:
        array = array[..., :3] if array.shape[2] >= 3 else np.repeat(array[..., :1], 3, axis=2)
    elif array.shape[2] == 1:
        array = array[..., 0]
    return np.ascontiguousarray(array)


def _tiff_tags(data: np.ndarray) -> dict[int, int] | None:
    """BitsPerSample (258), Compression (259), Photometric (262), SamplesPerPixel (277), PlanarConfiguration (284) and
    ExtraSamples (338, the first extra band's meaning) of a TIFF's (classic or BigTIFF) first page, those it gives; None for any other file or a header that cannot be
    followed."""
    import struct

    head = bytes(data[:4])
    if head not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return None
    order = "<" if head.startswith(b"II") else ">"
    big = head[2:] in (b"+\x00", b"\x00+")  # BigTIFF: 8-byte offsets and counts, 20-byte entries
    offset_format, entry_size, inline = (order + "Q", 20, 8) if big else (order + "I", 12, 4)
    try:
        (ifd,) = struct.unpack_from(offset_format, data, 8 if big else 4)
        (entries,) = struct.unpack_from(order + ("Q" if big else "H"), data, ifd)
        first = ifd + (8 if big else 2)
        found = {}
        for i in range(entries):
            tag, kind, count, value = struct.unpack_from(order + ("HHQ8s" if big else "HHI4s"), data,
                                                         first + entry_size * i)
            if tag in (258, 259, 262, 277, 284, 338) and kind == 3:  # SHORTs (the first of several counts)
                at = 0 if 2 * count <= inline else struct.unpack(offset_format, value)[0]
                found[tag] = struct.unpack_from(order + "H", value if 2 * count <= inline else data, at)[0]
    except struct.error:
        return None
    return found


def png_cut_short(data) -> bool:
    """True for PNG bytes that end before their IEND chunk (a download or copy cut off): libpng refuses them with
    lines of its own on stderr ("libpng error: PNG input buffer is incomplete"), which name no file, beside segcli's
    own line about it. Only the chunk headers are walked (no CRCs: those would cost a tenth of a decode)."""
    import struct

    view = memoryview(data)
    if view.nbytes < 8 or bytes(view[:8]) != PNG_MAGIC:
        return False
    at, end = 8, view.nbytes
    while at + 12 <= end:  # each chunk: length (4 bytes), type (4), data (length), CRC (4)
        if bytes(view[at + 4:at + 8]) == b"IEND":
            return False
        at += 12 + struct.unpack_from(">I", view, at)[0]
    return True


def jpeg_cut_short(data) -> bool:
    """True for JPEG bytes that end before their end-of-image marker. The marker segments before the first scan are
    walked by their lengths (an EXIF thumbnail's own end marker is inside one); in the scan data a 0xFF byte is
    always followed by 0x00 or a restart marker, so the first FF D9 after the scan's start ends the image. Bytes
    after it (a phone's trailer, a motion photo's video) do not make the file truncated."""
    import struct

    if bytes(memoryview(data)[:2]) != JPEG_MAGIC:
        return False
    data = data if isinstance(data, (bytes, bytearray)) else memoryview(data).tobytes()
    at, end = 2, len(data)
    while at + 4 <= end:
        if data[at] != 0xFF:
            return False  # not a marker where one belongs: a malformed file, for the decoder to judge
        marker = data[at + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 1 if marker == 0xFF else 2  # fill byte, or a marker without a length
            continue
        if marker == 0xD9:
            return False
        (length,) = struct.unpack_from(">H", data, at + 2)
        if marker == 0xDA:  # start of scan: entropy-coded data follows its header
            return data.rfind(b"\xff\xd9", at + 2 + length) < 0  # from the end: found at once when intact
        at += 2 + length
    return True


def imdecode(data: np.ndarray, flags: int) -> np.ndarray | None:
    """cv2.imdecode; with COLOUR, a file OpenCV refuses to decode that way (a one- or four-channel 32/64-bit TIFF:
    floating point, int32) is decoded as stored and given 3 channels (grey repeated, extra channels dropped).
    TIFFs OpenCV misreads (_opencv_misreads), or does not decode at all, go through tifffile.
    None: not decodable."""
    if not data.size or png_cut_short(data):
        return None
    tags = _tiff_tags(data) if flags in (COLOUR, cv2.IMREAD_UNCHANGED) else None  # None too for any other file
    if tags is not None and _opencv_misreads(tags):
        return _tifffile_decode(data, flags)
    # a 32/64-bit TIFF of other than 3 channels is not tried in colour: OpenCV refuses it and logs an '[ERROR] ...
    # can't read data' line on stderr for every such file, although it is read
    refused = flags == COLOUR and tags is not None and tags.get(258, 1) >= 32 and tags.get(277, 1) != 3
    array = None if refused else cv2.imdecode(data, flags)
    if array is None and flags == COLOUR:
        array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if array is not None and (array.ndim == 2 or array.shape[2] < 3):
            array = np.repeat((array if array.ndim == 2 else array[..., 0])[..., None], 3, axis=2)
        elif array is not None:
            array = np.ascontiguousarray(array[..., :3])
    if array is None and tags is not None:
        array = _tifffile_decode(data, flags)  # e.g. a sample format or layout OpenCV's libtiff refuses
    return array


def decode_stored(data: np.ndarray, shown: np.ndarray) -> np.ndarray | None:
    """An image file's every channel at its depth (IMREAD_UNCHANGED), turned the way `shown` is: `shown` is the
    same file's COLOUR decode ((H, W, 3) BGR, EXIF orientation applied), and IMREAD_UNCHANGED ignores the EXIF
    orientation of a PNG, JPEG or WebP. The rotation or flip of the stored pixels whose colours equal `shown`'s is
    taken; None when the file does not decode or no turn of it matches (e.g. a CMYK TIFF, whose channels are
    converted in colour): keep `shown` then."""
    stored = imdecode(data, cv2.IMREAD_UNCHANGED)
    if stored is None:
        return None
    for turned in (stored, np.swapaxes(stored, 0, 1)):  # the 8 EXIF orientations: 4 quarter turns, each mirrored
        for quarter in range(4):
            candidate = np.rot90(turned, quarter)
            if candidate.shape[:2] != shown.shape[:2] or candidate.dtype != shown.dtype:
                continue
            colours = candidate[..., :3] if candidate.ndim == 3 and candidate.shape[2] >= 3 else (
                candidate if candidate.ndim == 2 else candidate[..., 0])
            if np.array_equal(colours, shown if colours.ndim == 3 else shown[..., 0], equal_nan=shown.dtype.kind == "f"):
                return np.ascontiguousarray(candidate)
    return None


def _imread(path: Path, flags: int, data: np.ndarray | None = None) -> np.ndarray:
    """cv2.imread that copes with non-ASCII paths and reports failures as DataError (`data`: the bytes, if read)."""
    data = _read(path) if data is None else data
    array = imdecode(data, flags)
    if array is None:
        raise DataError(f"{path}: not a readable image (corrupt, truncated or unsupported format); replace or remove it")
    return array


def to_uint8(array: np.ndarray, value_range: Sequence[float] | None = None) -> np.ndarray:
    """A decoded image of any depth as uint8. value_range [low, high] (a dataset card's image_range): values mapped
    linearly from low..high onto 0..255 (clipped outside); none: 16-bit scaled by 1/257 (65535 → 255), floating
    point with every finite value in 0..1 scaled by 255 (prepare's reading of such images), other depths clipped to
    0-255. Floating-point no-data: NaN and -inf read as the low end (0), +inf as the high end (255). 8-bit images are
    returned as they are either way."""
    if array.dtype == np.uint8:
        return array
    if value_range is not None:
        low, high = float(value_range[0]), float(value_range[1])
        values = non_finite_to(array.astype(np.float32), low, high) if array.dtype.kind == "f" else array.astype(np.float32)
        scaled = (values - low) * np.float32(255.0 / (high - low)) + np.float32(0.5)
        return np.clip(scaled, 0, 255).astype(np.uint8)
    if array.dtype == np.uint16:
        return (array / 257.0 + 0.5).astype(np.uint8)
    if array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:  # floating point in 0..1, as prepare reads it
            return (non_finite_to(array, 0.0, 1.0) * np.float32(255) + np.float32(0.5)).astype(np.uint8)
        array = non_finite_to(array, 0.0, 255.0)
    return np.clip(array, 0, 255).astype(np.uint8)


def non_finite_to(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """A floating-point image with its no-data values replaced: NaN and -inf by `low`, +inf by `high` (the ends of the
    range it is read through); a new array."""
    return np.nan_to_num(array, nan=low, posinf=high, neginf=low)


def read_image(path: str | Path, channels: int = 3, value_range: Sequence[float] | None = None) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB, EXIF orientation applied.

    Grayscale is repeated to 3 channels, alpha is dropped, deeper images become 8-bit (to_uint8: mapped from
    `value_range`, the dataset card's image_range, when given).
    channels=1: (H, W, 1) luma of that RGB image (a grayscale file comes back unchanged).
    Other counts (multispectral): (H, W, C) uint8 with the channels as stored (a 4-channel PNG/TIFF:
    R, G, B, 4th), EXIF orientation applied as well; a file with another channel count is a DataError.
    """
    path = Path(path)
    if channels not in (1, 3):
        return _read_channels(path, channels, value_range)
    rgb = cv2.cvtColor(to_uint8(_imread(path, COLOUR), value_range), cv2.COLOR_BGR2RGB)
    return rgb if channels == 3 else to_channels(rgb, 1)


def stored_channels(path: str | Path) -> int:
    """How many channels the image file holds as stored (1 grey, 3 colour, 4 RGBA or a 4th band, C bands)."""
    return _channel_count(_imread(Path(path), cv2.IMREAD_UNCHANGED))


def is_cmyk_tiff(path: str | Path) -> bool:
    """A TIFF of CMYK samples (PhotometricInterpretation 5): decoded in colour as RGB, converted, not as its first
    three bands; its stored channel count says nothing of bands a 3-channel model leaves out."""
    tags = _tiff_tags(_read(Path(path)))
    return tags is not None and tags.get(262) == 5


def is_alpha_tiff(path: str | Path) -> bool:
    """A TIFF whose first extra band is alpha (ExtraSamples 1 or 2): grey + alpha, RGBA; an alpha band is rightly
    left out by a model that reads grey or RGB."""
    tags = _tiff_tags(_read(Path(path)))
    return tags is not None and tags.get(338) in (1, 2)


def _channel_count(array: np.ndarray) -> int:
    return 1 if array.ndim == 2 else array.shape[2]


def _read_channels(path: Path, channels: int, value_range: Sequence[float] | None) -> np.ndarray:
    data = _read(path)
    array = _oriented(_imread(path, cv2.IMREAD_UNCHANGED, data), exif_orientation(data))  # as shown, as in colour
    found = _channel_count(array)
    if found != channels:
        raise DataError(f"{path}: {found} channel(s), but the model takes {channels} (model.in_channels); "
                        "give images with that many channels")
    array = to_uint8(array, value_range)
    if channels >= 3:  # OpenCV stores colour as BGR(A): put the first three in RGB order
        array = np.ascontiguousarray(np.concatenate([array[..., 2::-1], array[..., 3:]], axis=2))
    return array


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """An (H, W, C) uint8 image with `channels` channels: as is when C already matches, (H, W, 3) RGB → (H, W, 1)
    luma (OpenCV's RGB→GRAY, what read_image(channels=1) gives); anything else is a DataError."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == channels:
        return image
    if channels == 1 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    raise DataError(f"an image with {image.shape[2]} channels cannot feed a model with {channels} input channels")


def png_colour_type(data: bytes | np.ndarray | None) -> int | None:
    """A PNG file's IHDR colour type (0 grey, 2 RGB, 3 indexed, 4 grey + alpha, 6 RGBA); None for other files."""
    head = bytes(data[:26]) if data is not None else b""
    return head[25] if head.startswith(PNG_MAGIC) and len(head) > 25 else None


def grey_png_depth(data: bytes | np.ndarray | None) -> int | None:
    """The bit depth of a grey (colour type 0) PNG; None for other files."""
    head = bytes(data[:26]) if data is not None else b""
    return head[24] if png_colour_type(data) == 0 else None


def stored_levels(array: np.ndarray, data: bytes | np.ndarray) -> np.ndarray:
    """The values a 1-, 2- or 4-bit grey PNG stores (a 1-bit mask, PIL's mode '1' or a bool array saved, holds 0/1),
    where OpenCV scaled them to 0..255; any other image as it is."""
    depth = grey_png_depth(data)
    return array // (255 // (2 ** depth - 1)) if depth in (1, 2, 4) else array


def is_palette_png(data: bytes | np.ndarray) -> bool:
    """An indexed (mode P) PNG: IHDR colour type 3. OpenCV expands these to colours; PIL keeps the indices."""
    return png_colour_type(data) == 3


def read_mask(path: str | Path, colours=None, what: str = "mask") -> np.ndarray:
    """Read a class-id mask as (H, W) uint8 or uint16 exactly as stored (no colour conversion; an indexed PNG gives
    its indices, as `predict --palette-png` and PASCAL VOC store them). With `colours` (a
    segcli.data.palette.ColourMap), a colour mask (8- or 16-bit, RGB or RGBA; grey colours in one channel too) is
    mapped to ids through it, as `prepare` maps a --palette's colours, and so is an indexed PNG whose colour table
    gives the palette's colours at other indices; a colour it lacks is an error. A JPEG is an error (its compression
    changes the values at every edge). what: the file's role in the errors ("mask", "prediction")."""
    from segcli.data.masks import indexed_mask, stored_mask

    path = Path(path)
    data = _read(path)
    stored = data.tobytes()
    try:
        raw = indexed_mask(stored, path)
    except DataError as err:
        raise DataError(f"{err}; replace or remove it") from None
    if raw is None:
        raw = stored_mask(_imread(path, cv2.IMREAD_UNCHANGED, data), stored)
    if raw.lossy:
        raise DataError(f"{path}: {what} stored as JPEG, whose compression changes the values at every edge (ids "
                        f"or colours of other classes); save it as PNG (lossless), straight from the ids or colours")
    if raw.kind == "palette":
        return _indexed_ids(raw, path, colours, what)
    if raw.kind == "rgb":
        if colours is None:
            channels = _channel_count(_imread(path, cv2.IMREAD_UNCHANGED, data))
            raise DataError(f"{path}: {what} has {channels} different colour channels but class ids are expected; "
                            "store one channel of ids, or convert colours with a palette")
        ids, unknown = colours.to_values(raw.array)
        if unknown:
            raise DataError(f"{path}: a colour {what} with colours that are not in the dataset's palette "
                            f"({unknown}); store class ids, or the palette's colours (dataset.yaml)")
        return ids
    greys = _palette_greys(raw.array, colours) if colours is not None else None
    if greys is not None:
        return colours.to_values(np.repeat(greys[..., None], 3, axis=2))[0]
    if raw.array.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: {what} dtype {raw.array.dtype} is not 8- or 16-bit integer; save it as an 8/16-bit PNG")
    return raw.array


def _indexed_ids(raw, path: Path, colours, what: str) -> np.ndarray:
    """An indexed PNG's (H, W) uint8 ids: its indices, unless `colours` is given and the colour table puts the
    palette's colours at other indices than their ids (a PNG optimiser, or a tool's own quantisation, reorders the
    table): then its colours, as `prepare` reads them. An index past a table that is otherwise the palette's colours
    is an error (its pixels have no colour)."""
    indices = raw.array
    if colours is None:
        return indices
    used = np.flatnonzero(np.bincount(indices.ravel()))
    listed = used[used < raw.entries]
    by_colour, unknown = colours.to_values(raw.table[listed][None])
    by_colour = by_colour[0]
    ids = np.isin(listed, colours.values)  # indices that are class ids: does the table show the card's colour there?
    cards = bool(ids.any()) and np.array_equal(by_colour[ids], listed[ids])
    if unknown or cards or (np.array_equal(by_colour, listed) and len(listed) == len(used)):
        return indices  # ids (with another palette, or the card's own as `predict --palette-png` writes them)
    if len(listed) < len(used):
        raise DataError(f"{path}: indexed {what} uses index {int(used[-1])}, but its colour table lists {raw.entries} "
                        "colour(s), so the pixel has no colour; the file is damaged or was written with its table cut "
                        "short: re-save it with every colour it uses, or store class ids")
    lut = np.zeros(256, by_colour.dtype)
    lut[listed] = by_colour
    return lut[indices]


def _palette_greys(grey: np.ndarray, colours) -> np.ndarray | None:
    """The (H, W) uint8 grey colours of a mask whose channels are all equal (or that has one channel, 8- or 16-bit,
    narrowed as prepare narrows it: segcli.data.masks.grey_bytes) when it holds palette colours, not ids: its levels
    are not all class ids (or the ignore value) but are all grey colours of the palette (a colour prediction that
    shows only grey classes, e.g. building (70, 70, 70), has r = g = b everywhere; a binary tool's 0/255 for a
    palette of black and white). None otherwise."""
    from segcli.data.masks import grey_bytes

    levels = np.flatnonzero(np.bincount(grey.ravel().astype(np.int64)))
    narrow = grey_bytes(grey)
    if narrow is None or np.isin(levels, colours.values).all() or not colours.knows_all_greys(narrow):
        return None
    return narrow


def resolver() -> Callable[[str | Path], str]:
    """A function path → its real path (symlinks resolved), resolving each folder once: for comparing many files'
    locations (an output that would overwrite an input)."""
    import functools

    real_dir = functools.lru_cache(maxsize=None)(os.path.realpath)
    return lambda path: os.path.join(real_dir(os.path.dirname(os.path.abspath(path))), os.path.basename(path))


def within(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies under it (both already resolved, e.g. by resolver())."""
    return os.path.commonpath([folder, path]) == folder


def page_count(path: str | Path) -> int:
    """How many pages a TIFF (or frames an animated GIF) holds: OpenCV reads the first only; 1 for any other
    file, or one it cannot read (whose own error comes when it is decoded)."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff", ".gif"):
        return 1
    if path.suffix.lower() != ".gif":  # OpenCV counts 0 pages in a TIFF whose bands it cannot decode (5 or more)
        import tifffile

        try:
            with tifffile.TiffFile(path) as tiff:
                return max(1, len(tiff.pages))
        except Exception:  # not a TIFF after all, or damaged: OpenCV's count, or its own error when decoded
            pass
    try:
        return max(1, int(cv2.imcount(str(path))))
    except cv2.error:
        return 1


def pages_noun(path: str | Path) -> str:
    """What page_count counts in `path`: 'frames' (an animated GIF) or 'pages' (a TIFF)."""
    return "frames" if Path(path).suffix.lower() == ".gif" else "pages"


def list_images(root: str | Path, extensions=IMAGE_EXTENSIONS) -> list[Path]:
    """Image files (or files of other `extensions`) under `root` (recursive), sorted; `root` may also be a single
    file. Hidden files and folders (a name starting with '.': macOS's ._x.jpg resource forks, .ipynb_checkpoints/,
    .git/) are not images. A symbolic link to nothing (or a loop of them) is listed: reading it names it, where
    leaving it out said its pair had no image or mask, or left an input out without a word. A folder that cannot be
    listed (no read permission) is a DataError naming it."""
    root = Path(root)
    if root.is_file():
        return [root]
    found, visited = [], set()

    def unreadable_folder(err: OSError):  # os.walk skipped it without a word: its images were simply not there
        from segcli.errors import DataError

        raise DataError(f"{err.filename}: cannot list this folder ({err.strerror}); give read access to it "
                        f"(chmod a+rx), or move it out of {root}")

    for folder, dirs, files in os.walk(root, onerror=unreadable_folder, followlinks=True):  # symlinked: walked too
        real = os.path.realpath(folder)
        if real in visited:  # a link back up the tree (a loop) or a second link to a folder already walked
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder, name) for name in files if not name.startswith(".")
                     and Path(name).suffix.lower() in extensions and _file_or_broken_link(os.path.join(folder, name)))
    return sorted(found)


def _file_or_broken_link(path: str) -> bool:
    return os.path.isfile(path) or (os.path.islink(path) and not os.path.exists(path))


def staging_path(folder: Path, name: str, suffix: str = "") -> Path:
    """folder/<name>.partial-<host>-<pid><suffix>: where a command builds an output before it moves it into place.
    Those a killed process (SIGKILL, the OOM killer, a power cut) of this machine left there are removed first, so
    that they do not pile up beside the outputs; a process that is still running keeps its own."""
    prefix = _partial_prefix(name)
    remove_stale_partials(folder, prefix, suffix)
    return Path(folder) / f"{prefix}{os.getpid()}{suffix}"


def _partial_prefix(name: str) -> str:
    """'<name>.partial-<host>-': what this machine's staging and temp names start with, the writer's PID next. A name
    too long to take the rest within a file name's 255 bytes is cut, with a digest of it (`<start>~<digest>`), so that
    any name the file system takes can be written (a 250-character --out failed as 'File name too long', naming the
    hidden staging path)."""
    import hashlib
    import socket

    host = socket.gethostname().replace(os.sep, "_") or "host"
    prefix = f"{name}.partial-{host}-"
    room = 255 - 40  # the rest: a leading '.', the PID, a random part, a suffix such as '.tmp' or '.onnx'
    if len(os.fsencode(prefix)) > room:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
        keep = max(0, room - len(os.fsencode(f"~{digest}.partial-{host}-")))
        prefix = f"{os.fsdecode(os.fsencode(name)[:keep])}~{digest}.partial-{host}-"
    return prefix


def remove_stale_partials(folder: Path, prefix: str, suffix: str = "") -> None:
    """Remove folder/<prefix><pid>[-…]<suffix> files and folders whose process (of this machine) is no longer
    running: what a SIGKILL left mid-write."""
    import glob
    import shutil

    for stale in Path(folder).glob(glob.escape(prefix) + "*" + glob.escape(suffix)):
        pid = stale.name[len(prefix): len(stale.name) - len(suffix)].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files of atomic writes of `path` that a killed process left beside it (a checkpoint's: up to
    hundreds of MB each)."""
    remove_stale_partials(Path(path).parent, "." + _partial_prefix(Path(path).name), ".tmp")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM): running
        return True
    return True


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same directory and os.replace."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], fsync: bool = False) -> None:
    """Call `write(handle)` on a temp file beside `path`, then os.replace it over `path` (after an fsync with
    `fsync`): `path` is either its previous content or complete. A failed write leaves no temp file and no
    folders it created; an OSError becomes a DataError naming `path`."""
    path = Path(path)
    created = missing_folders(path.parent)
    tmp = None
    try:
        with stops_held():  # a stop signal between mkstemp and these assignments would leave the temp file behind
            fd, tmp = _temp_beside(path)
            handle = os.fdopen(fd, "wb")
        with handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        remove_empty(created)
        cause = os_error_in(err)
        if cause is not None:
            raise WriteError(path, cause.strerror or str(cause)) from None
        raise


# what a write meets when the output, not the input, is at fault: a full disk, a quota, a read-only filesystem, a
# file past the filesystem's size limit
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


@contextlib.contextmanager
def writing(target: str | Path):
    """Around code that writes `target` (a file or folder, maybe through a hidden staging copy): a write that fails
    for a cause in WRITE_ERRNOS, or an atomic_write's WriteError, becomes one WriteError naming `target` (exit 3). A
    library's OSError named no file ("cannot write the output", as if stdout had failed), torch.jit.save's was an
    abort, and a staging file's name is not where the user looks."""
    try:
        yield
    except WriteError as err:
        raise WriteError(target, err.reason) from None
    except Exception as err:
        cause = os_error_in(err)
        if cause is None or cause.errno not in WRITE_ERRNOS:
            raise
        raise WriteError(target, cause.strerror or str(cause)) from None


def os_error_in(err: BaseException) -> OSError | None:
    """`err` when it is an OSError, or the OSError it was raised while handling: torch.save's zip writer reports a
    write that failed (a full disk) as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos", with
    the OSError only as its context. None for anything else (a stop signal included)."""
    for cause in exception_chain(err):
        if not isinstance(cause, Exception):  # a stop signal (KeyboardInterrupt) is no write failure
            return None
        if isinstance(cause, OSError):
            return cause
    return None


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temp file in `path`'s folder, made first. A parallel writer whose own write failed may remove that
    folder (empty again) between the two steps: it is made again, so that this write meets its own error (e.g.
    the full disk) rather than 'No such file or directory'."""
    attempts = 4
    for attempt in range(attempts):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # .<name>.partial-<host>-<pid>-<random>.tmp: remove_stale_temps knows a killed writer's
            return tempfile.mkstemp(prefix=f".{_partial_prefix(path.name)}{os.getpid()}-", suffix=".tmp",
                                    dir=path.parent)
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write created (deepest first), as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


def missing_folders(path: str | Path) -> list[Path]:
    """`path` and its parents that do not exist yet, deepest first (what a write would create)."""
    path = Path(path)
    return [p for p in (path, *path.parents) if not p.exists()]


def _blocker(folder: str | Path) -> tuple[Path, bool] | None:
    """The nearest of `folder` and its parents that exists, or is a symbolic link to nothing, when it is not a
    folder: (that path, whether it is such a link); None when it is a folder or nothing is there."""
    folder = Path(folder).expanduser()
    for path in (folder, *folder.parents):
        dangling = path.is_symlink() and not path.exists()
        if dangling or path.exists():
            return None if path.is_dir() else (path, dangling)
    return None


def file_in_the_way(folder: str | Path) -> Path | None:
    """The nearest existing one of `folder` and its parents when it is a file, not a folder (every write under
    `folder` would then fail, found only after the work); None when it is a folder or nothing exists."""
    found = _blocker(folder)
    return found[0] if found is not None and not found[1] else None


def in_the_way(folder: str | Path, file_fix: str = "move it away, or give another path") -> str | None:
    """Why no folder can be made at `folder`: the nearest of it and its parents that is a file (`file_fix` says what
    to do), or a symbolic link to nothing (mkdir says 'File exists' for both, which read as a disk or permission
    problem); None otherwise."""
    found = _blocker(folder)
    if found is None:
        return None
    path, dangling = found
    if dangling:
        return (f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; create that folder, or give "
                "another path")
    return f"{path} is a file, not a folder; {file_fix}"


def not_writable(folder: str | Path) -> Path | None:
    """The nearest existing one of `folder` and its parents when this user cannot create files in it (permissions,
    a read-only mount): every write under `folder` would fail, found only after the work; None otherwise (a file
    in the way is file_in_the_way's)."""
    folder = Path(folder).expanduser()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return None
    return None if os.access(existing, os.W_OK | os.X_OK) else existing


def unwritable(folder: Path) -> str:
    """How a folder that not_writable() found cannot be written: on a read-only file system (no chmod helps), or not
    for this user."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "is on a read-only file system"
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        pass
    return "is not writable for this user"


def prune_created_tree(root: Path, created: list[Path]) -> None:
    """After a failed command: if it created `root` (created = missing_folders(root) taken before), remove the
    empty folders left under it, bottom-up, then root and the parents it created while they are empty.
    Writers running in parallel can each leave a folder another one expected to remove."""
    if not created:
        return
    for folder, _, _ in os.walk(root, topdown=False):  # children before their parents
        try:
            os.rmdir(folder)
        except OSError:
            pass
    remove_empty(created)


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write a (H, W) id mask or (H, W, 3) RGB image as PNG, atomically."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise DataError(f"{path}: could not encode PNG")
    atomic_write_bytes(path, encoded.tobytes())


def ascii_text(text: str) -> str:
    """What OpenCV's Hershey fonts can draw: accents dropped ('ü' → 'u'), other non-ASCII letters as '?'."""
    import unicodedata

    folded = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return folded.encode("ascii", "replace").decode("ascii")


LABEL_CHARS = 40  # longest class name drawn in full in a figure or legend


def class_labels(class_names: list[str], numbered: bool = False) -> list[str]:
    """Class names as OpenCV draws them (figures, overlay legends, the class-frequency chart): a long name shortened
    in its middle (one 100-character name made the confusion matrix a small square in a mostly blank canvas), and
    every name prefixed with its id when drawing loses them apart or whole (names in a script the font lacks: '道路'
    and '天空' would both be '??'), or when `numbered`."""
    short = [n if len(n) <= LABEL_CHARS else n[:LABEL_CHARS - 14] + "..." + n[-11:] for n in class_names]
    labels = [ascii_text(n) for n in short]
    lost = any(label.count("?") > n.count("?") for label, n in zip(labels, short)) or len(set(labels)) < len(labels)
    if numbered or lost:
        labels = [f"{i} {label}" for i, label in enumerate(labels)]
    return labels


def colorize(mask: np.ndarray, palette: list[list[int]], ignore_index: int) -> np.ndarray:
    """(H, W) ids → (H, W, 3) uint8 RGB; ids outside the palette (ignore) are black."""
    lut = np.zeros((max(65536 if mask.dtype == np.uint16 else 256, len(palette)), 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)
    return lut[mask]


def display_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, C) uint8 image as (H, W, 3) RGB to look at: a multispectral image shows its first three
    channels (R, G, B as read_image stores them), one or two channels show the first as grey."""
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] > 3:
        return np.ascontiguousarray(image[..., :3])
    grey = image if image.ndim == 2 else image[..., 0]
    return np.repeat(grey[..., None], 3, axis=2)


def overlay(image: np.ndarray, mask: np.ndarray, palette: list[list[int]], ignore_index: int, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours onto an (H, W, C) uint8 image (RGB, or shown as by display_rgb) with opacity `alpha`."""
    colour = colorize(mask, palette, ignore_index)
    return cv2.addWeighted(display_rgb(image), 1.0 - alpha, colour, alpha, 0.0)
