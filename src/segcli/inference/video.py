"""Videos, frame by frame: an overlay video out, optional per-frame masks, optional temporal smoothing.

OUT/overlays/REL.<ext>   the overlay video (same size and frame rate; .mp4 for mp4/mov/m4v inputs with
                         the mp4v codec, .avi with MJPG otherwise), written to a temp name and renamed
OUT/REL/NNNNNN.png       per-frame class-id masks (video.masks=true), NNNNNN = frame index from 0
OUT/uncertainty/REL/NNNNNN.png
                         per-frame entropy maps, with --save uncertainty and video.masks=true; every frame gets
                         its score (as an image does) in uncertainty.csv and --jsonl, as it gets its rows in
                         areas.csv ("clip.mp4#000012"), with or without the maps
Smoothing (smooth = A > 0): p_t = A · p_(t-1) + (1 − A) · softmax(logits_t), masks = argmax p_t.
An odd-sized video's overlay keeps its size in an .avi (OpenCV's own MJPEG writer); OpenCV's FFmpeg writer, used for
.mp4 and for other codecs, drops the last column/row. FFmpeg's and OpenCV's own log lines are kept off stderr (see
quiet()); segcli's messages name what they meant.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from segcli.console import counted, info
from segcli.errors import ConfigError, DataError
from segcli.inference.outputs import FOLDERS, Outputs, Record, with_suffix

CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
FFMPEG_QUIET = "-8"  # AV_LOG_QUIET, for OPENCV_FFMPEG_LOGLEVEL
_ffmpeg_level_given = False  # whether the first video open of this process has been made under quiet()


def library_lines_wanted() -> bool:
    """Whether FFmpeg's and OpenCV's own lines should reach stderr: SEGCLI_DEBUG=1, or the user's own
    OPENCV_FFMPEG_LOGLEVEL / OPENCV_FFMPEG_DEBUG."""
    env = os.environ
    return env.get("SEGCLI_DEBUG", "") not in ("", "0") or "OPENCV_FFMPEG_LOGLEVEL" in env or \
        "OPENCV_FFMPEG_DEBUG" in env


@contextlib.contextmanager
def quiet():
    """Open a video (cv2.VideoCapture, cv2.VideoWriter) inside this: FFmpeg's and OpenCV's own lines ("[mov,mp4,... @
    0x55..] moov atom not found", "OpenCV: FFMPEG: tag 'XVID' is not supported ... fallback to use tag 'mp4v'",
    "[ERROR:0@7.9] ... Failed to initialize VideoWriter") are kept off stderr, where they stood beside segcli's own line
    about the same file. Two parts, both needed with this OpenCV: (1) OPENCV_FFMPEG_LOGLEVEL=-8 (quiet) is set while
    the process's first video opens, as OpenCV reads it then, once, to set FFmpeg's log level for the process (also
    quieting decoding's lines, "ac-tex damaged", while frames are read); it is removed again at once, so no process
    segcli starts inherits it; (2) file descriptor 2 is pointed at a temporary file during the call, for the lines
    OpenCV prints itself (fprintf, not its logger) and those of a process whose FFmpeg had started before. Nothing else
    writes to stderr meanwhile: predict opens videos after its image threads have finished. Under library_lines_wanted()
    nothing is hidden: the lines are kept as well, then written to stderr as the block is left. Yields a list that
    holds, once the block is left, the lines kept off stderr: segcli reads what it needs of them (fallback_tag) and
    says it in its own words."""
    global _ffmpeg_level_given
    lines: list[str] = []
    shown = library_lines_wanted()
    first = not shown and not _ffmpeg_level_given
    _ffmpeg_level_given = _ffmpeg_level_given or not shown
    if first:
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = FFMPEG_QUIET
    try:
        with _stderr_kept(lines):
            yield lines
    finally:
        if first:
            os.environ.pop("OPENCV_FFMPEG_LOGLEVEL", None)
        if shown:
            for line in lines:
                info(line)


@contextlib.contextmanager
def _stderr_kept(lines: list[str]):
    """File descriptor 2 on a temporary file for the duration, its lines appended to `lines` after (Python's sys.stderr
    flushed first, so nothing of segcli's is lost); /dev/null when no temporary file can be made, and a descriptor
    that cannot be duplicated is left as it is."""
    import tempfile

    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        sink = tempfile.TemporaryFile()
    except OSError:  # no room for one: the lines are dropped
        sink = None
    try:
        target = sink.fileno() if sink is not None else os.open(os.devnull, os.O_WRONLY)
    except OSError:
        target = None
    try:
        saved = os.dup(2) if target is not None else None
    except OSError:  # no descriptor 2 to keep
        saved = None
    try:
        if saved is None:
            yield
            return
        try:
            os.dup2(target, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    finally:
        if sink is None and target is not None:
            os.close(target)
        if sink is not None:
            with sink:
                try:
                    sink.seek(0)
                    lines.extend(sink.read(1 << 16).decode("utf-8", "replace").splitlines())
                except OSError:
                    pass


def open_capture(path: Path):
    """cv2.VideoCapture of `path`, opened under quiet()."""
    import cv2

    with quiet():
        return cv2.VideoCapture(str(path))


def overlay_path(outputs: Outputs, rel: Path, source: Path) -> Path:
    from segcli.inference.sources import overlay_suffix

    return outputs.out / "overlays" / with_suffix(rel, overlay_suffix(source))


def frames(path: Path, batch_size: Callable[[tuple], int]):
    """Batches of consecutive (H, W, 3) uint8 RGB frames (batch_size(frame shape) of them: fewer of a large frame),
    the capture's fps, and the frame count its header announces (0 when the container does not say)."""
    import cv2

    try:  # gone since it was listed, or unreadable: not 'OpenCV cannot open this video … re-encode it'
        with open(path, "rb"):
            pass
    except OSError as err:
        from segcli.inference.io import cannot_read

        raise DataError(f"{path}: {cannot_read(path, err)}") from None
    _refuse_an_image(path)
    capture = open_capture(path)
    if not capture.isOpened():
        if path.is_file() and path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty (0 bytes); copy or record it again")
        raise DataError(f"{path}: OpenCV cannot open this video (no frames, damaged, or an unsupported codec); check "
                        "that it plays, or re-encode it as H.264 mp4")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    announced = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    announced = int(announced) if 0 < announced < 2**31 else 0  # raw streams give -2**63 or nothing

    def batches():
        try:
            batch = []
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                if len(batch) >= batch_size(batch[0].shape):
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            capture.release()

    return fps, announced, batches()


def _refuse_an_image(path: Path) -> None:
    """A DataError for an image with a video's suffix (a JPEG saved as x.mp4): FFmpeg reads it as a 1-frame video,
    and its overlay "video" and one row per frame hid the mistake. Found by its leading bytes (sources.image_format),
    then confirmed by OpenCV reading at most one frame: a bare MJPEG stream (JPEGs one after another) is a video."""
    from segcli.inference.sources import image_format

    found = image_format(path)
    if found is None:
        return
    capture = open_capture(path)
    try:
        count = 0
        while count < 2 and capture.isOpened() and capture.grab():
            count += 1
    finally:
        capture.release()
    if count < 2:
        name, suffix = found
        raise DataError(f"{path}: this is a {name} image, not a video; rename it to {path.stem}{suffix}")


def frame_mask_path(outputs: Outputs, rel: Path, index: int) -> Path:
    return outputs.out / rel / f"{index:06d}.png"


def frame_uncertainty_path(outputs: Outputs, rel: Path, index: int) -> Path:
    return outputs.out / FOLDERS["uncertainty"] / rel / f"{index:06d}.png"


def is_frame_mask_name(name: str) -> bool:
    """Whether a file name is one frame_mask_path gives (NNNNNN.png)."""
    stem, dot, suffix = name.partition(".")
    return dot == "." and suffix == "png" and len(stem) >= 6 and stem.isdigit()


def _check_written(tmp: Path, target: Path, frames: int, code: str) -> None:
    """OpenCV's video writer reports no failed write: on a disk that filled up, predict put a cut-off overlay video
    in place (23 of 60 frames playable) and exited 0. A disk with no room left after the video is taken as having
    cut it off (an AVI's header may even count every frame: the header is written first, the frames' data after),
    and the file must hold every frame."""
    import cv2

    _check_room(tmp.parent, target)
    capture = open_capture(tmp)
    held = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    if held < frames:
        raise DataError(f"{target}: OpenCV's writer (video.codec={code}) wrote {held} of the "
                        f"{counted(frames, 'frame')}; set video.codec to another FourCC your OpenCV supports, "
                        "e.g. MJPG")


def _check_room(folder: Path, target: Path) -> None:
    """WriteError naming `target` when a 4 KiB write into `folder` fails now (a full disk, a quota): what OpenCV's
    video writer met, as it says nothing of why it could not open or write."""
    import tempfile

    from segcli.errors import WriteError

    try:
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise WriteError(target, err.strerror or str(err)) from None


def _remove_stale_frames(outputs: Outputs, rel: Path, frames: int) -> None:
    """Remove the frame masks and entropy maps numbered `frames` and above: an earlier run of a longer video under
    this name left them (a clip trimmed or recorded again), and with them the folder held more masks than the video
    has frames, and --skip-existing never took the video as finished."""
    for folder in (frame_mask_path(outputs, rel, 0).parent, frame_uncertainty_path(outputs, rel, 0).parent):
        if folder.is_dir():
            for path in folder.iterdir():
                if is_frame_mask_name(path.name) and int(path.name.partition(".")[0]) >= frames:
                    path.unlink(missing_ok=True)


def fourcc(codec: str | None, target: Path) -> str:
    """The overlay video's FourCC: video.codec, else the default for `target`'s container; video.codec must be 4
    characters (Hydra reads video.codec=1234 as a number: it is taken as the text 1234)."""
    if codec is None or str(codec) == "":
        return CODECS[target.suffix]
    if len(str(codec)) != 4:
        raise ConfigError(f"video.codec={codec}: a FourCC is 4 characters, e.g. video.codec=mp4v (mp4) or "
                          "video.codec=MJPG (avi)")
    return str(codec)


def fallback_tag(lines: list[str]) -> str | None:
    """The FourCC OpenCV's FFmpeg writer used instead of the one asked for, from its line (kept by quiet()) "OpenCV:
    FFMPEG: fallback to use tag 0x7634706d/'mp4v'": FFmpeg's mp4 muxer takes only the tags of its own table (XVID,
    DIVX, MJPG become mp4v), and its avi muxer not a tag in the wrong case (xvid becomes FMP4). None: no fallback."""
    import re

    for line in lines:
        found = re.search(r"fallback to use tag 0x[0-9a-fA-F]+/'(.{4})'", line)
        if found:
            return found.group(1)
    return None


def open_writer(tmp: Path, target: Path, code: str, fps: float, size: tuple[int, int]):
    """→ (an opened cv2.VideoWriter writing `tmp`, whether it keeps `size` (W, H) whole, the FourCC it writes: `code`,
    or the one OpenCV fell back to when `target`'s container does not take `code`, see fallback_tag). OpenCV's FFmpeg
    writer drops the last column and row of an odd size; for an .avi in MJPG (the default there) OpenCV's own MJPEG
    writer keeps them, so it writes the odd sizes (even ones stay with FFmpeg, unchanged: its files are about half as
    large). A writer that cannot be opened is a ConfigError naming the codec (a WriteError when the disk is full)."""
    import cv2

    odd = size[0] % 2 or size[1] % 2
    if odd and target.suffix == ".avi" and code.upper() == "MJPG":
        # it stores whole frames per second (and opens no file below 0.5): exact_avi_rate rewrites the rate after it
        with quiet():
            writer = cv2.VideoWriter(str(tmp), cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), max(fps, 1.0),
                                     size)
        if writer.isOpened():
            return writer, True, "MJPG"
    with quiet() as lines:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*code), fps, size)
    if not writer.isOpened():
        _check_room(tmp.parent, target)  # a full disk is no codec OpenCV lacks
        raise ConfigError(f"{target}: OpenCV cannot write this video (video.codec={code}); set video.codec to a "
                          "FourCC your OpenCV supports, e.g. MJPG")
    return writer, not odd, fallback_tag(lines) or code


def exact_avi_rate(path: Path, fps: float) -> None:
    """Rewrite the frame rate in the header of an AVI that OpenCV's own MJPEG writer wrote: it stores a whole number
    of frames per second (29.97 as 30, 12.5 as 12), so the overlay would drift against its source. The rate goes
    into the stream header as a fraction (30000/1001) and into the main header as microseconds per frame."""
    import struct
    from fractions import Fraction

    if not fps > 0:
        return
    rate = Fraction(fps).limit_denominator(1001)
    with open(path, "r+b") as file:
        head = file.read(4096)
        main, stream = head.find(b"avih"), head.find(b"strh")
        if main < 0 or stream < 0 or head[stream + 8:stream + 12] != b"vids" or not rate:
            return
        file.seek(main + 8)  # the chunk's id and size, then dwMicroSecPerFrame
        file.write(struct.pack("<I", round(1e6 / fps)))
        file.seek(stream + 8 + 20)  # fccType, fccHandler, dwFlags, wPriority, wLanguage, dwInitialFrames; then
        file.write(struct.pack("<II", rate.denominator, rate.numerator))  # dwScale and dwRate: fps = rate / scale


def finished_video(item, outputs: Outputs, frame_masks: bool, counts: bool) -> list[Record] | None:
    """For --skip-existing: the Records (skipped=True) of a video an earlier run finished, or None when it must be
    predicted (again). Finished: its overlay video exists and, with `frame_masks`, a mask per frame of it. With
    `counts` (areas.csv, --jsonl), only a video whose frame masks are there to count the classes again is
    finished, and with --save uncertainty only one whose frame entropy maps are there to score the frames again:
    without them its rows would be lost."""
    import cv2

    from segcli.inference.outputs import read_ids, uncertainty_score, whole_file

    target = overlay_path(outputs, item.rel, item.path)
    if not whole_file(target):  # an empty file (a crash before its data reached the disk) is no finished video
        return None
    uncertain = "uncertainty" in outputs.save
    if not (frame_masks or counts or uncertain):
        return []
    masks = []
    while frame_mask_path(outputs, item.rel, len(masks)).is_file():
        masks.append(frame_mask_path(outputs, item.rel, len(masks)))
    capture = open_capture(target)
    written = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    complete = bool(masks) and (written <= 0 or len(masks) == written)  # 0: a container that does not say
    maps = [frame_uncertainty_path(outputs, item.rel, index) for index in range(len(masks))] if uncertain else []
    if not complete or not all(whole_file(path) for path in [*masks, *maps]):  # a cut-off PNG: predicted again
        return None
    records = []
    for index, path in enumerate(masks if counts or uncertain else []):
        pixels = (np.bincount(read_ids(path).ravel(), minlength=len(outputs.classes))[: len(outputs.classes)].tolist()
                  if counts else [])
        files = {"mask": str(path)} if frame_masks else {}
        score = None
        if uncertain:
            score = uncertainty_score(read_ids(maps[index]))
            if frame_masks:
                files["uncertainty"] = str(maps[index])
        records.append(Record(f"{item.path}#{index:06d}", {**files, "video": str(target)}, pixels, score,
                              skipped=True))
    return records


def predict_video(item, predictor, outputs: Outputs, smooth: float, frame_masks: bool, codec: str | None,
                  emit: Callable[[Record], None], noted: set | None = None) -> Path:
    """Predict every frame of `item.path`; emit one Record per frame ("clip.mp4#000012"); → the overlay video.
    `noted`: the codec fallbacks already noted in this run (one note for all the videos of a kind), updated."""
    import cv2
    import torch

    from segcli.inference.io import write_png
    from segcli.inference.outputs import normalised_entropy, uncertainty_score
    from segcli.inference.predictor import to_ids

    if predictor.read_channels != 3:
        raise DataError(f"{item.path}: video frames have 3 colour channels, but the model takes {predictor.channels} "
                        "(model.in_channels); give it images with that many channels")
    target = overlay_path(outputs, item.rel, item.path)
    code = fourcc(codec, target)
    noted = set() if noted is None else noted
    fps, announced, batches = frames(item.path, predictor.images_per_batch)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
    writer = None
    previous = None
    index = 0
    try:
        for batch in batches:
            probs = None
            if smooth > 0 or outputs.needs_probs:
                probs = torch.softmax(predictor.logits(batch), 1)
                if smooth > 0:
                    for i in range(probs.shape[0]):
                        if previous is not None:
                            probs[i] = smooth * previous + (1.0 - smooth) * probs[i]
                        previous = probs[i].clone()
                ids = to_ids(probs)
            else:
                ids = predictor.ids(batch)
            for i, (frame, mask) in enumerate(zip(batch, ids)):
                if writer is None:
                    h, w = frame.shape[:2]
                    writer, whole, used = open_writer(tmp, target, code, fps, (w, h))
                    own_mjpeg = (w % 2 or h % 2) and whole  # OpenCV's MJPEG writer: odd sizes kept (open_writer)
                    if used != code and (code, used, target.suffix) not in noted:  # once per run and container
                        noted.add((code, used, target.suffix))
                        kind = target.suffix[1:]
                        default = f" (the default for {kind})" if used == CODECS[target.suffix] else ""
                        info(f"predict: note: OpenCV writes {kind} videos (video.codec={code}) with the FourCC {used}, "
                             f"as an {kind} file does not take {code}: {target} is {used}; set video.codec={used}"
                             f"{default} to ask for what is written")
                    if not whole:
                        info(f"predict: note: {item.path} is {w}×{h}; OpenCV writes {target.suffix[1:]} videos "
                             f"(video.codec={code}) at even sizes, so its overlay video is {w - w % 2}×{h - h % 2} "
                             f"(masks and areas keep {w}×{h})")
                writer.write(cv2.cvtColor(outputs.overlay(frame, mask), cv2.COLOR_RGB2BGR))
                name = f"{item.path}#{index:06d}"
                paths = {}
                if frame_masks:
                    paths["mask"] = frame_mask_path(outputs, item.rel, index)
                    outputs.write_mask(paths["mask"], mask)
                score = None
                if "uncertainty" in outputs.save:  # scored as an image is: from the 8-bit map (see uncertainty_score)
                    entropy = np.round(normalised_entropy(probs[i].float().cpu().numpy()) * 255).astype(np.uint8)
                    score = uncertainty_score(entropy)
                    if frame_masks:
                        paths["uncertainty"] = frame_uncertainty_path(outputs, item.rel, index)
                        write_png(paths["uncertainty"], entropy)
                pixels = np.bincount(mask.ravel(), minlength=len(outputs.classes))[: len(outputs.classes)].tolist()
                emit(Record(name, {**{k: str(p) for k, p in paths.items()}, "video": str(target)}, pixels, score))
                index += 1
        if writer is None:
            raise DataError(f"{item.path}: no frames could be read from this video; check that it plays")
        if index < announced - max(1, announced // 100):  # a container's estimate may be off by a frame or so
            info(f"predict: note: {item.path}: read {index} of the {announced} frames its header announces (a truncated "
                 "or damaged file?); the overlay video and the rows hold those read")
        writer.release()
        writer = None
        if own_mjpeg:
            exact_avi_rate(tmp, fps)
        _check_written(tmp, target, index, code)
        os.replace(tmp, target)
        if frame_masks:
            _remove_stale_frames(outputs, item.rel, index)
        return target
    finally:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
