"""segcli predict: masks, overlays, probabilities, uncertainty and area reports for images, folders and videos.

Flow: sources.collect → shard → skip finished → decode in DataLoader workers (loader.decode) →
batches of same-size images through the shared Predictor → outputs written by a background thread
pool (outputs.Outputs) → areas.csv / uncertainty.csv (tables) and a summary line on stderr.
stdout: what was written: one mask path per image (without mask in --save, its first kind's file), one overlay video
path per video, and with --save areas alone (no file per image) the path of areas.csv once it is written; or one JSON
line per image with --jsonl.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

from segcli.console import counted, info, result
from segcli.errors import ConfigError, DataError, WriteError


def collect_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(image path, output-relative path without suffix) for each input; kept for callers of the old API."""
    from segcli.inference.sources import collect

    return [(item.path, item.rel) for item in collect(inputs)]


def _check(cfg) -> str:
    from segcli.checks import number
    from segcli.inference.model_files import model_paths

    if cfg.ckpt and cfg.model:
        raise ConfigError("both --ckpt and --model given; pass one of them (repeat it for an ensemble)")
    model = ", ".join(model_paths(cfg.model or cfg.ckpt))
    if not model:
        raise ConfigError("no model given; pass --ckpt RUN_DIR/checkpoints/best.ckpt or --model FILE.onnx|FILE.pt")
    if not cfg.out:
        raise ConfigError("no output directory; pass --out DIR")
    if not cfg.inputs and not cfg.list:
        raise ConfigError("no inputs; pass image or video files, folders, globs, --list FILE or - for stdin")
    if cfg.shard is not None and not str(cfg.shard).strip():  # `--shard "$SHARD"`, unset: it predicted all inputs
        raise ConfigError(f"--shard {str(cfg.shard)!r}: names no shard (an unset variable?), so every job would "
                          "predict every input into the same files; write I/N, e.g. --shard 0/4, or leave --shard out "
                          "to predict all inputs")
    if list(cfg.inputs).count("-") > 1:  # the second read an empty stdin: 'stdin: no paths listed'
        raise ConfigError("the input - is given more than once; stdin holds one list of paths: give - once")
    if cfg.on_error not in ("skip", "fail"):
        raise ConfigError(f"--on-error {cfg.on_error}: choose skip or fail")
    number("--smooth", cfg.smooth, 0, 1, what="the EMA weight of the previous frames, from 0 up to (not including) 1")
    if float(cfg.smooth) >= 1.0:
        raise ConfigError(f"--smooth {cfg.smooth}: the EMA weight of the previous frames must be below 1 (1 would "
                          "never take in a new frame)")
    number("--alpha", cfg.alpha, 0, 1, what="the overlay opacity, from 0 to 1")
    number("inference.batch_size", cfg.inference.batch_size, 1, integer=True)
    number("workers", cfg.workers, 0, integer=True)
    number("writers", cfg.writers, 1, integer=True)
    from segcli.inference.video import fourcc

    fourcc(cfg.video.codec, Path("video.mp4"))  # a FourCC of 4 characters, checked before anything is predicted
    return str(model)


class Run:
    """State of one predict run: the emitted records, the failures, and how results reach stdout."""

    def __init__(self, cfg, outputs, classes: list[str]):
        self.cfg, self.outputs, self.classes = cfg, outputs, classes
        self.records = []
        self.failed: list[str] = []
        self.skipped = 0

    def emit(self, record) -> None:
        self.records.append(record)
        if self.cfg.jsonl:
            result(json.dumps(record.to_json(self.classes)))
        elif record.outputs and "video" not in record.outputs:  # a video's path is printed once, when complete
            outputs = record.outputs  # none with --save areas alone: areas.csv's path is printed when it is written
            result(outputs.get("mask") or next(iter(outputs.values())))

    def fail(self, message: str) -> None:
        self.failed.append(message)
        info(f"segcli: warning: {message}")
        if self.cfg.on_error == "fail":
            raise DataError(f"{message} (on_error=fail: stopped; rerun with --skip-existing to resume)")


def run(cfg):
    """Load the model named by cfg.ckpt / cfg.model (several: their ensemble) and predict cfg's inputs; → the mask
    paths (outputs as cfg.save says)."""
    from segcli.inference.model_files import check_model_there, model_paths

    model = _check(cfg)
    shard_spec, save = _options(cfg)
    paths = model_paths(cfg.model or cfg.ckpt)
    for path in paths:
        check_model_there(path)  # a missing file or a folder given as a model: said before torch is loaded (seconds)
    from segcli.inference.backends import load_predictor
    from segcli.inference.predictor import ensemble

    members = [load_predictor(path, cfg.device, cfg.inference.batch_size) for path in paths]
    predictor = ensemble(members).configure(cfg.inference)
    if note := predictor.options.cost_note():
        info(f"predict: note: {note}")
    return _predict_with(cfg, predictor, model, shard_spec, save)


def _predict_with(cfg, predictor, model: str, shard_spec, save: tuple) -> list[Path]:
    """Predict cfg's inputs with a loaded Predictor (`model` names it in errors), as `_options` read --shard and
    --save; → the mask paths."""
    from segcli.inference.io import missing_folders, prune_created_tree
    from segcli.inference.outputs import Outputs
    from segcli.inference.sources import collect, shard

    collected = collect(list(cfg.inputs), cfg.list, stdin=_stdin(cfg), skip_under=cfg.out)
    items = shard(collected, shard_spec)
    outputs = Outputs(Path(cfg.out), save, predictor.classes, predictor.palette, predictor.ignore_index,
                      float(cfg.alpha), bool(cfg.legend), bool(cfg.palette_png))
    _refuse_overwriting_inputs(collected, outputs, bool(cfg.video.masks))  # all shards' inputs: they share OUT
    _check_output_folders(items, outputs, shard_spec)
    if (outputs.needs_probs or float(cfg.smooth) > 0) and predictor.outputs_ids:
        raise ConfigError(f"{model}: this model returns class ids (exported with --argmax), so prob, uncertainty and "
                          "smooth are unavailable; export without --argmax")
    state = Run(cfg, outputs, predictor.classes)
    created = missing_folders(outputs.out)
    try:
        return _predict_all(cfg, items, predictor, state, save, shard_spec, collected)
    except BaseException:  # writes run in parallel threads: folders one of them created may be left empty
        prune_created_tree(outputs.out, created)
        raise


def _options(cfg) -> tuple:
    """(the shard, the outputs to save) from --shard and --save, once --out is checked: none of it needs the model."""
    from segcli.inference.outputs import parse_save
    from segcli.inference.sources import parse_shard

    _check_out(Path(cfg.out))
    shard_spec = parse_shard(cfg.shard)
    save = parse_save(cfg.save)
    if not cfg.overlay:
        if save == ("overlay",):  # was a mask written in place of the one output asked for, without a word
            raise ConfigError("--save overlay with overlay=false leaves nothing to write; drop overlay=false, or "
                              "--save mask")
        save = tuple(k for k in save if k != "overlay")
    return shard_spec, save


def _stdin(cfg):
    """The list of paths on stdin (`-`, `--list -`), less a leading UTF-8 byte-order mark (PowerShell and Windows
    editors write one: kept, it made the first path '\ufeffa.png', 'cannot read file'). Its bytes are decoded as file
    names are (UTF-8, other bytes kept as os.fsdecode keeps them), so `find | segcli predict -` finds a file whose name
    is not UTF-8 under any locale (under a strict UTF-8 one such a name was an internal error). None when no input
    reads stdin (it is not read then: a terminal would wait)."""
    import io
    import sys

    if ("-" not in list(cfg.inputs) and cfg.list != "-") or sys.stdin is None:
        return None
    raw = getattr(sys.stdin, "buffer", None)
    text = sys.stdin.read() if raw is None else raw.read().decode("utf-8", "surrogateescape")
    return io.StringIO(text.removeprefix("\ufeff"))


def _check_out(out: Path) -> None:
    """--out is a folder, or will be made under one: a file in its place would fail every write."""
    from segcli.inference.io import in_the_way, not_writable, unwritable

    why = in_the_way(out, "give a folder for the outputs")  # found at the first mask written, as 'File exists'
    if why is not None:
        raise DataError(f"--out {out}: {why}")
    folder = not_writable(out)
    if folder is not None:  # found at the first mask written, after the model was loaded and had run
        raise DataError(f"--out {out}: {folder} {unwritable(folder)}; give a folder you can write to")


def _targets(item, outputs) -> list[Path]:
    """The files predict writes for input `item` directly under its name: an image's outputs (mask, overlay, ...), a
    video's overlay video (its frame masks go in a folder of their own)."""
    from segcli.inference.video import overlay_path

    return [overlay_path(outputs, item.rel, item.path)] if item.is_video else list(outputs.paths(item.rel).values())


def _check_output_folders(items, outputs, shard_spec=None) -> None:
    """A file where an output folder goes (OUT/overlays, OUT/probs, OUT/SUB for an input tree's sub-folder SUB, e.g.
    left by another tool or an earlier run of other inputs) fails every write there, found only after the model ran
    and named as 'cannot write it (File exists); check free space and permissions': named before any work instead.
    So is a folder where an output file goes (OUT/x.png, OUT/areas.csv)."""
    from segcli.inference.io import file_in_the_way
    from segcli.inference.tables import table_name

    targets = {target for item in items for target in _targets(item, outputs)}
    for folder in sorted({target.parent for target in targets}):
        blocker = file_in_the_way(folder)
        if blocker is not None:
            raise DataError(f"--out {outputs.out}: {blocker} is a file, but predict writes into a folder of that name; "
                            "move the file away, or give another --out")
    tables = {outputs.out / table_name(kind, shard_spec) for kind in ("areas", "uncertainty") if kind in outputs.save}
    for target in sorted(targets | tables):
        if target.is_dir():
            raise DataError(f"--out {outputs.out}: {target} is a folder, but predict writes a file of that name; "
                            "move the folder away, or give another --out")


def _refuse_overwriting_inputs(items, outputs, frame_masks: bool = False) -> None:
    """`predict DIR --out DIR` would replace each image by its mask (same name, .png): refused before anything
    is written. Paths are compared after symlinks are resolved (one realpath per folder). So are two inputs whose
    outputs would land on one file: `x.png` and `overlays/x.png` (the overlay of one, the mask of the other), or with
    `frame_masks` the video `clip.mp4` and an image `clip/000000.png` (frame 0's mask)."""
    from segcli.inference.io import resolver
    from segcli.inference.outputs import FOLDERS
    from segcli.inference.video import is_frame_mask_name

    real = resolver()

    def real_input(path) -> str:  # a symlinked file (DVC, git-annex, datalad) is its target: photos/x.png by its link
        return os.path.realpath(path) if os.path.islink(path) else real(path)

    inputs = {real_input(item.path) for item in items}
    written: dict[str, object] = {}
    folders = [Path()] + ([Path(FOLDERS["uncertainty"])] if "uncertainty" in outputs.save else [])
    frame_folders: dict = {}  # frame masks and frame entropy maps
    for item in (item for item in items if item.is_video and frame_masks):
        for folder in folders:
            other = frame_folders.setdefault(outputs.out / folder / item.rel, item)
            if other is not item:  # clip.mp4 and clip.avi
                raise ConfigError(f"{item.path} and {other.path} would both write their frame masks into "
                                  f"{outputs.out / folder / item.rel}; predict them into separate --out folders")
    for item in items:
        for target in _targets(item, outputs):
            if real(target) in inputs and real(target) == real_input(item.path):
                raise ConfigError(f"{item.path}: --out {outputs.out} would overwrite this input with a prediction; "
                                  "give an --out folder that holds no inputs")
            if real(target) in inputs:  # another input, e.g. a listed file under --out: an earlier run's output?
                raise ConfigError(f"{target}: --out {outputs.out} would overwrite this input with the prediction of "
                                  f"{item.path}; give an --out folder that holds no inputs (an earlier run's "
                                  "output? leave --out's files out of the list)")
            other = written.setdefault(str(target), item)
            if other is item and is_frame_mask_name(target.name):
                other = frame_folders.get(target.parent, item)
            if other is not item:
                raise ConfigError(f"{item.path} and {other.path} would both write {target}; predict them into "
                                  "separate --out folders")


def _input_of(name: str) -> str:
    """A table row's input: a video's frame rows (clip.mp4#000003) count as their video."""
    from segcli.inference.sources import VIDEO_EXTENSIONS

    video, sep, frame = name.rpartition("#")
    return video if sep and frame.isdigit() and Path(video).suffix.lower() in VIDEO_EXTENSIONS else name


def _predict_all(cfg, items, predictor, state, save, shard_spec, collected) -> list[Path]:
    import torch

    outputs = state.outputs
    start = time.perf_counter()
    images = [item for item in items if not item.is_video]
    videos = [item for item in items if item.is_video]
    # before the tables' try: a finished mask that cannot be read back leaves the earlier run's tables as they were
    todo = _skip_finished(images, state) if cfg.skip_existing else images
    try:
        _note_stacks(todo)
        _predict_images(todo, predictor, state, torch)
        _note_earlier_kinds(todo, outputs, items)
        if videos:
            _note_video_outputs(save, bool(cfg.video.masks))
        elif images:
            _note_video_options(cfg)
        noted: set = set()  # the video codec fallbacks noted: one note each
        for item in videos:
            from segcli.inference.video import finished_video, overlay_path, predict_video

            try:
                done = (finished_video(item, outputs, bool(cfg.video.masks), _counts(state))
                        if cfg.skip_existing else None)
                if done is not None:
                    state.skipped += 1
                    for record in done:
                        state.emit(record)
                    video = overlay_path(outputs, item.rel, item.path)
                else:
                    video = predict_video(item, predictor, outputs, float(cfg.smooth), bool(cfg.video.masks),
                                          cfg.video.codec, state.emit, noted)
                if not cfg.jsonl:
                    result(str(video))
            except WriteError:  # an output, not this input: "could not be read", and the next video would fail too
                raise
            except DataError as err:
                state.fail(err.message)
    except BaseException:
        _tables_of_a_stopped_run(state, collected, save, shard_spec)
        raise
    _write_tables(state, collected, save, shard_spec)
    seconds = time.perf_counter() - start
    fresh = [record for record in state.records if not record.skipped]
    done = len(fresh)  # images and video frames
    frames = sum(1 for record in fresh if "video" in record.outputs)
    videos = len({record.outputs["video"] for record in fresh if "video" in record.outputs})
    predicted = (f"{counted(done - frames, 'image')} and {counted(videos, 'video')} ({counted(frames, 'frame')}) "
                 "predicted" if videos
                 else f"{done} predicted")
    rate = f" ({done / seconds if seconds else 0:.1f}{' images+frames' if videos else ''}/s)" if done else ""
    info(f"predict: {predicted}, {state.skipped} skipped (done before), {len(state.failed)} failed of "
         f"{counted(len(items), 'input')} in {seconds:.1f}s{rate} → {outputs.out}")
    if state.failed:
        others = "the others were predicted" if len(state.failed) < len(items) else "nothing was predicted"
        raise DataError(f"{len(state.failed)} of {counted(len(items), 'input')} could not be read "
                        f"(first: {state.failed[0]}); {others}")
    return [Path(r.outputs["mask"]) for r in state.records if "mask" in r.outputs]


def _tables_of_a_stopped_run(state, collected, save, shard_spec) -> None:
    """The tables of the inputs done before a run stopped (Ctrl-C, an output that could not be written). One that
    cannot be written either (the same full disk) must not hide what stopped the run: the error named areas.csv
    when the first mask had already failed."""
    try:
        _write_tables(state, collected, save, shard_spec)
    except WriteError:
        pass


def _write_tables(state, collected, save, shard_spec) -> None:
    """areas.csv and uncertainty.csv of the run. A table an earlier run left in --out may hold rows of inputs this
    run does not cover (a subset, another --list): with --skip-existing (a run that adds to --out) they are kept,
    else the table is this run's alone; either way a note says so, rather than the rows vanishing silently.
    `collected`: the run's inputs before --shard took its part: an input another shard has now (the inputs changed
    since the earlier run) is in that shard's table, not kept in this one's too."""
    from segcli.inference.tables import (AREAS, UNCERTAINTY, earlier_rows, same_classes, table_name, write_areas,
                                         write_uncertainty)

    classes = state.outputs.classes
    covered = _covered(collected)
    for kind, header in (("areas", AREAS), ("uncertainty", UNCERTAINTY)):
        if kind not in save:
            continue
        path = state.outputs.out / table_name(kind, shard_spec)
        others = earlier_rows(path, header, covered)
        keep = others if state.cfg.skip_existing and (kind != "areas" or same_classes(others, classes)) else []
        if kind == "areas":
            write_areas(path, state.records, classes, keep)
        else:
            write_uncertainty(path, state.records, keep)
        if not state.outputs.files and not state.cfg.jsonl:  # --save areas alone: the table is the run's result
            result(str(path))
        inputs = len({_input_of(row[header.index("input")]) for row in others})
        if keep:
            info(f"predict: note: {path} keeps the rows of {inputs} input(s) of an earlier run that are not among "
                 "this run's inputs (delete it first to start it afresh)")
        elif others:
            why = ("it was written with other classes (another model)" if state.cfg.skip_existing else
                   "add --skip-existing to keep them")
            info(f"predict: note: {path} held the rows of {inputs} input(s) of an earlier run that are not among this "
                 f"run's inputs; it now holds this run's only ({why})")


def _covered(items):
    """A test of a table row's input: is it one of `items` (a video frame 'clip.mp4#000012' by its video), named as
    this run names it or as a path to the same file (an earlier run may have named it relative to another folder)?
    Answers are cached: areas.csv names each input once per class."""
    import os
    from functools import lru_cache

    names = {str(item.path) for item in items}
    real = {os.path.realpath(item.path) for item in items}
    videos = {str(item.path) for item in items if item.is_video}
    real_videos = {os.path.realpath(item.path) for item in items if item.is_video}

    @lru_cache(maxsize=None)
    def covered(name: str) -> bool:
        video, hash_, frame = name.rpartition("#")
        if hash_ and frame.isdigit() and (video in videos or os.path.realpath(video) in real_videos):
            return True
        return name in names or os.path.realpath(name) in real

    return covered


def _note_earlier_kinds(items, outputs, inputs) -> None:
    """Files of the kinds --save leaves out that an earlier run wrote for the inputs predicted now (probs/x.npz and
    uncertainty/x.png of a run with another model, beside this run's x.png; uncertainty.csv ranking them): they are
    kept (a run may add kinds to those of an earlier one), but a note says that they are not this run's, rather than
    leave a mixed folder silently. A file that is one of the run's `inputs` (`items` are among them) is no earlier
    output: `predict imgs/ --out imgs/ --save areas` counted every image x.png as the earlier mask of itself."""
    from segcli.inference.io import resolver
    from segcli.inference.outputs import SUFFIXES

    others = [k for k in SUFFIXES if k not in outputs.files]  # the per-image kinds this run does not write
    found = {k: [item for item in items if outputs.path(k, item.rel).is_file()] for k in others}
    if any(found.values()):  # the inputs' real paths only where a file is there to compare
        real = resolver()
        given = {real(item.path) for item in inputs}
        found = {k: [item for item in hits if real(outputs.path(k, item.rel)) not in given]
                 for k, hits in found.items()}
    found = {k: hits for k, hits in found.items() if hits}
    if not found:
        return
    inputs = len({id(item) for hits in found.values() for item in hits})
    table = " and uncertainty.csv" if "uncertainty" in found and (outputs.out / "uncertainty.csv").is_file() else ""
    kinds = ", ".join(f"{k} ({len(hits)})" for k, hits in found.items())
    info(f"predict: note: {outputs.out} holds files of kinds this run did not write (--save {','.join(outputs.save)}) "
         f"for {inputs} of the {len(items)} input(s) predicted now: {kinds}{table}, left by an earlier run; they show "
         f"that run's prediction, not necessarily this one's: delete them, or add {','.join(found)} to --save")


def _note_stacks(images) -> None:
    """A multi-page TIFF or an animated GIF is read (by OpenCV) as its first page or frame: say so rather than
    leave the others out silently."""
    from segcli.inference.io import page_count, pages_noun

    counts = {item.path: page_count(item.path) for item in images}
    stacks = [(path, count) for path, count in counts.items() if count > 1]
    if stacks:
        (path, pages), more = stacks[0], len(stacks) - 1
        noun = pages_noun(path)
        fix = "convert it to a video (e.g. mp4) to predict every frame" if noun == "frames" else \
            "write one image per page to predict them all"
        info(f"predict: note: {path} holds {pages} {noun}; only the first is predicted"
             + (f" (and so for {more} more multi-page file{'s' if more > 1 else ''})" if more else "")
             + f"; {fix}")


def _note_video_outputs(save, frame_masks: bool) -> None:
    """A video gives an overlay video, areas rows and uncertainty scores per frame (masks and entropy maps with
    --frame-masks): say which of the outputs asked for it does not give, instead of leaving them out silently."""
    parts = []
    if "mask" in save and not frame_masks:
        parts.append("videos give an overlay video; add --frame-masks for a mask PNG per frame")
    if "uncertainty" in save and not frame_masks:
        parts.append("video frames get their uncertainty score in uncertainty.csv; add --frame-masks for an entropy "
                     "map per frame")
    if "prob" in save:
        parts.append("--save prob applies to images only, not to videos")
    if parts:
        info(f"predict: note: {'; '.join(parts)}")


def _note_video_options(cfg) -> None:
    """--smooth and --frame-masks act on videos only: with none among the inputs, say so rather than ignore them
    silently (--smooth 0.6 on a folder of stills gives exactly the masks without it)."""
    given = [name for name, on in (("--smooth", float(cfg.smooth) > 0), ("--frame-masks", bool(cfg.video.masks))) if on]
    if given:
        verb, it = ("apply", "they are") if len(given) > 1 else ("applies", "it is")
        info(f"predict: note: {' and '.join(given)} {verb} to videos only, and no video is among the inputs: "
             f"{it} ignored")


def _counts(state) -> bool:
    """Whether the run reports class counts per image (areas.csv, --jsonl): a skipped input's are read back from
    its mask."""
    return bool(state.cfg.jsonl) or "areas" in state.outputs.save


def _skip_finished(images, state) -> list:
    """Emit the records of images whose outputs all exist; return the rest. Without masks among the outputs, the
    class counts of finished images cannot be read back: they are predicted again when the run reports counts."""
    counts = _counts(state)
    reread = counts or "uncertainty" in state.outputs.save
    done = [state.outputs.done(item.rel) for item in images]  # each input's outputs looked up once
    if any(done) and counts and "mask" not in state.outputs.files:
        info(f"predict: note: {sum(done)} input(s) done before are predicted again: their class counts (areas, "
             "--jsonl) are read back from the masks, which --save leaves out; add mask to --save to skip them")
        return images
    todo, records = [], []
    for item, finished in zip(images, done):
        if not finished:
            todo.append(item)
            continue
        records.append(state.outputs.reread(str(item.path), item.rel) if reread else _bare(item, state.outputs))
    for record in records:  # all read back first: a mask that cannot be counted stops the run before any line
        state.skipped += 1
        state.emit(record)
    if state.skipped:
        info(f"predict: {counted(state.skipped, 'input')} already done in {state.outputs.out}, skipped")
    return todo


def _bare(item, outputs):
    from segcli.inference.outputs import Record

    return Record(str(item.path), {k: str(p) for k, p in outputs.paths(item.rel).items()}, [], skipped=True)


def _predict_images(items, predictor, state, torch) -> None:
    """Decode (workers) → batch same-size images → forward → write in background threads, results in order."""
    from concurrent.futures import ThreadPoolExecutor

    from segcli.inference.loader import decode
    from segcli.inference.predictor import to_ids

    cfg, outputs = state.cfg, state.outputs
    pending: deque = deque()
    batch: list = []
    progress = _progress(len(items))

    def drain(limit: int) -> None:
        while len(pending) > limit:
            state.emit(pending.popleft().result())
            progress(1)

    def flush(pool) -> None:
        images = [image for _, image in batch]
        if outputs.needs_probs:
            logits = predictor.logits(images)
            ids, probs = to_ids(logits), torch.softmax(logits, 1).cpu().numpy()
        else:
            ids, probs = predictor.ids(images), [None] * len(images)
        for (item, image), mask, prob in zip(batch, ids, probs):
            pending.append(pool.submit(outputs.write, str(item.path), item.rel, image, mask, prob))
        batch.clear()
        drain(2 * max(1, int(cfg.writers)) + predictor.batch_size)

    with ThreadPoolExecutor(max_workers=max(1, int(cfg.writers)), thread_name_prefix="segcli-write") as pool:
        try:
            for index, image, error in decode([item.path for item in items], int(cfg.workers),
                                                 channels=predictor.read_channels,
                                                 value_range=predictor.image_range):
                if error is not None:
                    if batch:  # everything before the bad input is finished, whatever on_error says
                        flush(pool)
                    progress(1)
                    state.fail(error)
                    continue
                full = batch and len(batch) >= predictor.images_per_batch(image.shape)
                if batch and (full or batch[0][1].shape != image.shape):
                    flush(pool)
                batch.append((items[index], image))
            if batch:
                flush(pool)
        finally:
            try:
                drain(0)
            except BaseException:  # a write failed: what other writers finished is on disk, so it is listed too
                while pending:
                    future = pending.popleft()
                    if future.exception() is None:
                        state.emit(future.result())
                raise


def _progress(total: int):
    """A callable advancing a progress bar on stderr (only when stderr is a terminal)."""
    import sys

    if not sys.stderr.isatty() or total == 0:
        return lambda n: None
    from rich.progress import Progress

    from segcli.console import stderr_console

    bar = Progress(console=stderr_console(), transient=True)
    bar.start()
    task = bar.add_task("predict", total=total)

    def advance(n: int) -> None:
        bar.advance(task, n)
        if bar.finished:
            bar.stop()

    return advance
