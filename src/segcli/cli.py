"""The Typer app: options, overrides and help. Imports nothing heavy.

Every command turns its options into a config (Hydra overrides + CLI values),
then hands it to `segcli.commands.<name>.run(cfg)`. Heavy modules (torch,
lightning, smp, cv2, even Hydra) are imported only inside the command bodies,
so `segcli --help` stays as fast as Typer itself.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import List, Optional

try:
    import typer
except ImportError as _missing:  # every command, --help and --version need Typer (and Click): a traceback was all
    from segcli.errors import EXIT_USAGE, import_failed

    sys.stderr.write(f"segcli: error: {import_failed(_missing) or _missing}\n")
    raise SystemExit(EXIT_USAGE) from None

from segcli import __version__


class _StdoutClosed(Exception):
    """stdout's reader went away (`segcli predict ... | head -1`): a BrokenPipeError that Click would otherwise turn
    into a silent exit 1, the code of a failed check."""


class _Group(typer.core.TyperGroup):
    def make_context(self, *args, **kwargs):  # where `segcli --help` and `--version` print (eager options)
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError as err:
            raise _StdoutClosed() from err

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError as err:
            raise _StdoutClosed() from err


app = typer.Typer(
    name="segcli",
    cls=_Group,
    help="Semantic segmentation from the command line: prepare → train → eval → predict → export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain Click help: importing rich for help would triple start-up time
    context_settings={"help_option_names": ["-h", "--help"]},
)
prepare_app = typer.Typer(
    help="Convert a dataset into segcli's canonical layout with a dataset card (dataset.yaml).",
    rich_markup_mode=None,
    no_args_is_help=True,
)
app.add_typer(prepare_app, name="prepare")


class _OnceOnly(typer.core.TyperCommand):
    """A command that says when an option of one value is given more than once (`--split val --split test`): Click
    keeps the last, and the first was dropped without a word. The last still wins (a wrapper script's defaults
    followed by the user's own), with a note."""

    def parse_args(self, ctx, args):
        single = {name: param for param in self.params if param.param_type_name == "option"  # (Typer's own Click)
                  and not (param.multiple or param.is_flag or param.count) for name in param.opts}
        seen: dict[str, list[str]] = {}
        index = 0
        while index < len(args) and args[index] != "--":
            name, equals, value = args[index].partition("=")
            param = single.get(name)
            if param is not None and not equals:  # `--split test`: the value is the next argument
                if index + 1 >= len(args):
                    break  # no value: Click's usage error says so, and nothing runs
                value = args[index + 1]
                index += 1
            if param is not None:
                seen.setdefault(param.opts[-1], []).append(value)
            index += 1
        if any(arg in ("-h", "--help") for arg in args):
            seen.clear()  # the help runs nothing
        for name, values in seen.items():
            if len(values) > 1:
                from segcli.console import first_process, info

                if first_process():  # (DDP's launcher runs the command line again in each further process)
                    info(f"segcli: note: {name} given {len(values)} times ({', '.join(values)}); the last, "
                         f"{values[-1]}, is used")
        return super().parse_args(ctx, args)


_MODULES = {"eval": "evaluate"}  # command name → module under segcli.commands


def _config_dir(groups: str):
    """--config-dir, its help naming the config groups of the command (`groups`; '' for a command with none, whose
    option is accepted but not shown: it has nothing to add to)."""
    return typer.Option(None, "--config-dir", hidden=not groups,
                        help=f"Extra directory of config groups ({groups}) added to the packaged conf/.")


ConfigDir = _config_dir("DIR/inference/mine.yaml, used as inference=mine")
NoConfigDir = _config_dir("")
PrintCfg = typer.Option(False, "--cfg", help="Print the composed config and exit.")


def _overrides(example: str):
    """The trailing key=value arguments of a command, with an example of that command's own keys."""
    return typer.Argument(None, help=f"Hydra overrides, e.g. {example}.", show_default=False)


PrepareOverrides = _overrides("workers=4 seed=1")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"segcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """segcli: semantic segmentation from the command line."""


def _execute(command: str, overrides: list[str] | None, values: dict, config_dir: Path | None, print_cfg: bool):
    """Compose the config for `command` and run it (lazy imports live here)."""
    from segcli.config import compose, to_yaml
    from segcli.console import write_out

    cfg = compose(command, list(overrides or []), values=values, config_dir=config_dir)
    if print_cfg:
        write_out(to_yaml(cfg))
        return None
    import importlib

    module = importlib.import_module(f"segcli.commands.{_MODULES.get(command, command)}")
    return module.run(cfg)


# ----------------------------------------------------------------------------- prepare
def _out_path(value: str) -> Path:
    """--out (or --run-dir) as a Path; an empty one (`--out "$OUT"` with OUT unset) is a usage error: Typer read it as
    '.', and predict, eval, export, prepare and train wrote into the current folder."""
    if not str(value).strip():
        raise typer.BadParameter("names no folder or file (an unset variable?); give the output's path (. for the "
                                 "current folder)")
    return Path(value)


def _in_path(value: str) -> Path:
    """An input path option (--predictions, --data, --ckpt, ...); an empty one (an unset variable) is a usage error:
    Typer read it as '.', and `eval --predictions "$UNSET"` scored the PNGs of the current folder (exit 0)."""
    if not str(value).strip():
        raise typer.BadParameter("names no file or folder (an unset variable?); give its path")
    return Path(value)


Out = typer.Option(None, "--out", parser=_out_path, metavar="<path>", help="Output dataset directory.")
Overwrite = typer.Option(False, "--overwrite", help="Replace OUT even when it is not empty, whatever it holds (a dataset or not): its old contents are deleted once the new dataset is in place.")
Strict = typer.Option(False, "--strict", help="Lint warnings fail the run too.")
KeepGoing = typer.Option(False, "--keep-going", help="Drop pairs with lint errors (listed in lint.json) instead of failing.")
MaxSize = typer.Option(None, "--max-size", help="Store images whose longer side exceeds PX downscaled (masks nearest-neighbour).")
Seed = typer.Option(None, "--seed", help="Random seed (default 0).")


def _prepare(fmt: str, out, overwrite, strict, keep_going, max_size, overrides, config_dir, print_cfg, **values) -> None:
    flags = {"overwrite": overwrite, "strict": strict, "keep_going": keep_going}  # False = leave the config's value
    values = {"format": fmt, "out": out, "max_size": max_size, **{k: v or None for k, v in flags.items()}, **values}
    _execute("prepare", overrides, values, config_dir, print_cfg)


def _pairs(option: str, items: list[str] | None, as_int: bool = False) -> dict | None:
    """['a=b', ...] → {'a': 'b', ...} (ints with as_int); a one-line usage error otherwise."""
    if not items:
        return None
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise typer.BadParameter(f"{item!r}: write KEY=VALUE", param_hint=option)
        try:
            key, value = (int(key), int(value)) if as_int else (key, value)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: both sides must be integers", param_hint=option) from None
        if result.get(key, value) != value:  # the last one won without a word
            raise typer.BadParameter(f"{key}={result[key]} and {key}={value} given; give {key} one value",
                                     param_hint=option)
        result[key] = value
    return result


@prepare_app.command("synthetic", cls=_OnceOnly)
def prepare_synthetic(
    out: Path = Out,
    num_images: int = typer.Option(None, "--num-images", help="Number of scenes (default from conf/prepare.yaml)."),
    seed: int = typer.Option(None, "--seed", help="Random seed; the same seed gives the same dataset."),
    overwrite: bool = Overwrite, strict: bool = Strict, keep_going: bool = KeepGoing, max_size: Optional[int] = MaxSize,
    overrides: Optional[List[str]] = PrepareOverrides, config_dir: Optional[Path] = NoConfigDir, print_cfg: bool = PrintCfg,
) -> None:
    """Generate the built-in procedural street-scene dataset."""
    _prepare("synthetic", out, overwrite, strict, keep_going, max_size, overrides, config_dir, print_cfg,
             **{"synthetic.num_images": num_images, "seed": seed})


def _native(fmt: str, help_src: str, doc: str):
    """A `prepare <fmt> --src DIR --out DIR` command for a dataset with a fixed native layout."""

    def command(
        src: Path = typer.Option(..., "--src", parser=_in_path, metavar="<path>", help=help_src),
        out: Path = Out,
        split: Optional[List[str]] = typer.Option(None, "--split", metavar="<name>", help="Native split to convert (repeatable; default: the format's own); NAME=NATIVE stores it as NAME, e.g. train=train_aug."),
        overwrite: bool = Overwrite, strict: bool = Strict, keep_going: bool = KeepGoing, max_size: Optional[int] = MaxSize,
        overrides: Optional[List[str]] = PrepareOverrides, config_dir: Optional[Path] = NoConfigDir, print_cfg: bool = PrintCfg,
    ) -> None:
        _prepare(fmt, out, overwrite, strict, keep_going, max_size, overrides, config_dir, print_cfg,
                 src=src, splits=list(split) if split else None)

    command.__doc__ = doc
    prepare_app.command(fmt, cls=_OnceOnly)(command)


_native("camvid", "CamVid: the SegNet layout (train/, trainannot/, ...) or the colour layout (train/, train_labels/, "
        "..., class_dict.csv).",
        "Convert CamVid (SegNet's 11 classes + Unlabelled → ignore, or the 32 colour-coded classes, Void → ignore).")
_native("voc", "VOCdevkit/VOC2012 (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/), or a folder holding it.",
        "Convert PASCAL VOC 2012 segmentation (21 classes, palette PNGs, 255 borders → ignore).")
_native("cityscapes", "Folder holding leftImg8bit/ and gtFine/, or KITTI's data_semantics/ (training/image_2/, "
        "training/semantic/; val: a random 0.2 of training/, val_fraction=F seed=S to change it).",
        "Convert Cityscapes fine annotations or KITTI semantics (label ids → the 19 train ids, the rest → ignore).")
_native("ade20k", "ADEChallengeData2016/ (images/ and annotations/, training/ and validation/).",
        "Convert ADE20K scene parsing (150 classes; 0 = other → ignore, ids shifted down by one).")


@prepare_app.command("folder", cls=_OnceOnly)
def prepare_folder(
    images: Path = typer.Option(..., "--images", parser=_in_path, metavar="<path>", help="Folder of images (searched recursively)."),
    masks: Path = typer.Option(..., "--masks", parser=_in_path, metavar="<path>", help="Folder of masks matched to images by relative stem: class ids, or RGB with --palette."),
    image_suffix: Optional[str] = typer.Option(None, "--image-suffix", help="End of the image names left out when pairing, e.g. _sat for x_sat.jpg (other files are skipped)."),
    mask_suffix: Optional[str] = typer.Option(None, "--mask-suffix", help="End of the mask names left out when pairing, e.g. _mask pairs x.jpg with x_mask.png (other files are skipped)."),
    out: Path = Out,
    classes: str = typer.Option(None, "--classes", help="Class names 'a,b,c', a file with one name per line, a CSV with id and name columns (Roboflow's _classes.csv) or nnU-Net's dataset.json."),
    palette: Optional[Path] = typer.Option(None, "--palette", parser=_in_path, metavar="<path>", help="File of 'name R G B' lines: classes, colours, RGB-mask mapping."),
    ignore_index: int = typer.Option(None, "--ignore-index", help="Mask value that means 'not labelled' (default 255)."),
    remap: Optional[List[str]] = typer.Option(None, "--remap", metavar="<raw=id>", help="Map a raw mask value to a class id, e.g. 255=1 (repeatable)."),
    reduce_zero_label: bool = typer.Option(False, "--reduce-zero-label", help="Masks use 0 for 'not labelled' and 1..N for the classes: 0 → ignore, k → k-1."),
    mask_threshold: Optional[int] = typer.Option(None, "--mask-threshold", help="Read two-valued masks stored as JPEG as value >= T → 1, else 0 (e.g. 128 for 0/255 masks)."),
    split_file: Optional[List[str]] = typer.Option(None, "--split-file", metavar="<split=file>", help="SPLIT=FILE listing the stems of a split (repeatable)."),
    val_fraction: float = typer.Option(None, "--val-fraction", help="Fraction of pairs held out for validation (random split; default 0.2, or the split folders train/ val/ test/ where the pairs sit in them)."),
    test_fraction: float = typer.Option(None, "--test-fraction", help="Fraction of pairs held out for testing (random split; default 0)."),
    folds: int = typer.Option(None, "--folds", help="Assign train pairs to K cross-validation folds (train with data.fold=k)."),
    group: Optional[str] = typer.Option(None, "--group", help="Regex giving each pair's group (video, patient) from its stem, e.g. '^[^_]+'; splits and folds keep groups whole."),
    seed: int = Seed,
    overwrite: bool = Overwrite, strict: bool = Strict, keep_going: bool = KeepGoing, max_size: Optional[int] = MaxSize,
    overrides: Optional[List[str]] = PrepareOverrides, config_dir: Optional[Path] = NoConfigDir, print_cfg: bool = PrintCfg,
) -> None:
    """Convert a plain images/ + masks/ folder pair (class-id or RGB-palette masks)."""
    _prepare("folder", out, overwrite, strict, keep_going, max_size, overrides, config_dir, print_cfg,
             images=images, masks=masks, classes=classes, palette=palette, ignore_index=ignore_index,
             remap=_pairs("--remap", remap, as_int=True), reduce_zero_label=reduce_zero_label or None, split_files=_pairs("--split-file", split_file),
             val_fraction=val_fraction, test_fraction=test_fraction, folds=folds, seed=seed, group=group,
             image_suffix=image_suffix, mask_suffix=mask_suffix, mask_threshold=mask_threshold)


@prepare_app.command("lint", cls=_OnceOnly)
def prepare_lint(
    directory: Path = typer.Argument(..., help="A prepared dataset directory (holds dataset.yaml).", show_default=False),
    strict: bool = Strict,
    overrides: Optional[List[str]] = PrepareOverrides, config_dir: Optional[Path] = NoConfigDir, print_cfg: bool = PrintCfg,
) -> None:
    """Lint an existing prepared dataset; writes DIR/lint.json, exit 1 on errors."""
    values = {"format": "lint", "src": directory, "strict": strict or None}
    _execute("prepare", overrides, values, config_dir, print_cfg)


# ----------------------------------------------------------------------------- train
def _groups_epilog() -> str:
    """"Config groups (GROUP=OPTION): model: deeplabv3, fpn, …; loss: …" from the packaged conf/ (a few directory
    listings when the help is shown, no YAML read), or '' where it cannot be listed."""
    from segcli.config import _groups, conf_dir
    from segcli.errors import SegcliError

    try:
        groups = _groups([conf_dir()])
    except (OSError, SegcliError):
        return ""
    # data has one option, default: its keys are what a user sets (data.root=DIR)
    listed = [f"{group}: {', '.join(options)}" for group, options in sorted(groups.items()) if group != "data"]
    return "Config groups (GROUP=OPTION, e.g. experiment=smoke): " + "; ".join(listed) + "."


class _GroupsListed(_OnceOnly):
    """A command whose help ends with its config groups, listed only when the help is shown (segcli.config's import
    would add 20 ms to every command's start)."""

    def format_epilog(self, ctx, formatter) -> None:
        self.epilog = self.epilog or _groups_epilog()
        super().format_epilog(ctx, formatter)


@app.command("train", cls=_GroupsListed)
def train(
    overrides: Optional[List[str]] = typer.Argument(None, show_default=False, help=(
        "Hydra overrides, e.g. data.root=data/camvid model.arch=fpn trainer.max_epochs=30 loss=ce. data.root is the "
        "prepared dataset (default data/synthetic); --cfg prints every key, and the config groups are listed below.")),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", parser=_out_path, metavar="<path>", help="Run directory (default runs/train/<timestamp>); with -m the sweep directory (default runs/sweep/<timestamp>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", parser=_in_path, metavar="<path>", help="Continue RUN_DIR from checkpoints/last.ckpt with its saved config.yaml (or a stopped sweep: SWEEP_DIR's unfinished jobs); only trainer.max_epochs (raise), trainer.max_time, trainer.enable_progress_bar, data.num_workers, data.cache, data.root (moved), final_eval and save_min_interval_s may be overridden."),
    multirun: bool = typer.Option(False, "-m", "--multirun", help="Sweep: key=a,b / key=range(1,4) / model=unet,fpn run one job per combination (one run dir each) and print a summary table."),
    start_from: Optional[Path] = typer.Option(None, "--from", parser=_in_path, metavar="<path>", help="Start a new run from a saved config: a run directory (its config.yaml) or a file of `segcli train --cfg`; key=value overrides change it."),
    config_dir: Optional[Path] = _config_dir("DIR/model/mine.yaml, DIR/experiment/mine.yaml, ...: model=mine"),
    print_cfg: bool = PrintCfg,
) -> None:
    """Train a model; the last stdout line is the run directory (with -m: a summary table, then the sweep directory)."""
    overrides = list(overrides or [])
    from segcli.training.sweep import follow_parent

    follow_parent()  # a sweep's job stops when the sweep process dies
    if start_from is not None:
        from segcli.errors import ConfigError

        if resume is not None or multirun or config_dir is not None:
            raise ConfigError("--from starts one new run from a saved config; drop --resume, -m and --config-dir")
        from segcli.training.resume import start_config

        cfg = start_config(start_from, overrides, run_dir)
        if print_cfg:
            from segcli.config import to_yaml
            from segcli.console import write_out

            write_out(to_yaml(cfg))
            return
        from segcli.commands.train import run

        run(cfg)
        return
    if resume is not None:
        from segcli.training.sweep import is_sweep_dir

        if is_sweep_dir(resume.expanduser()):
            if run_dir is not None or config_dir is not None or print_cfg or multirun:
                from segcli.errors import ConfigError

                raise ConfigError("--resume SWEEP_DIR continues that sweep as it was started; drop --run-dir, -m, "
                                  "--config-dir and --cfg (a job's config: --resume SWEEP_DIR/JOB --cfg)")
            from segcli.training.sweep import resume_sweep

            resume_sweep(resume, overrides)
            return
        if run_dir is not None or multirun or config_dir is not None:
            from segcli.errors import ConfigError

            raise ConfigError("--resume RUN_DIR continues that run with its own config; drop --run-dir, -m and --config-dir")
        from segcli.training.resume import resume_config

        cfg = resume_config(resume, overrides)
        if print_cfg:
            from segcli.config import to_yaml
            from segcli.console import write_out

            write_out(to_yaml(cfg))
            return
        from segcli.commands.train import run

        run(cfg, resume=True)
        return
    if multirun:
        from segcli.training.sweep import sweep

        sweep(overrides, run_dir, config_dir, print_cfg)
        return
    from segcli.training.sweep import refuse_sweep

    refuse_sweep(overrides)
    _execute("train", overrides, {"run_dir": run_dir}, config_dir, print_cfg)


# ----------------------------------------------------------------------------- eval
def _models(paths: list[Path] | None) -> str | list[str] | None:
    """A repeated --ckpt/--model: None when not given, the path when given once, the list of them for an ensemble."""
    given = [str(path.expanduser()) for path in paths or []]  # --ckpt=~/x: bash leaves the ~
    return None if not given else given[0] if len(given) == 1 else given


@app.command("eval", cls=_OnceOnly)
def evaluate(
    ckpt: Optional[List[Path]] = typer.Option(None, "--ckpt", parser=_in_path, metavar="<path>", help="Checkpoint (.ckpt) to evaluate; repeat it to evaluate the ensemble of several (their probabilities averaged)."),
    model: Optional[List[Path]] = typer.Option(None, "--model", parser=_in_path, metavar="<path>", help="Exported model (.onnx or TorchScript .pt from `segcli export`) to evaluate instead of a checkpoint; repeatable, as --ckpt."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", parser=_in_path, metavar="<path>", help="Folder of class-id PNGs (or colour PNGs in the card's palette) named like the split's masks: score them without a model (needs --data)."),
    data: Optional[Path] = typer.Option(None, "--data", parser=_in_path, metavar="<path>", help="Prepared dataset (default: the model's own)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to score (default val)."),
    out: Optional[Path] = typer.Option(None, "--out", parser=_out_path, metavar="<path>", help="Write report.json, report.md, per_class.csv, per_image.csv, confusion.csv/.png here."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the report as JSON to FILE, or '-' for stdout."),
    worst: Optional[int] = typer.Option(None, "--worst", help="Side-by-side panels of the K lowest-mIoU images in OUT/worst/."),
    corruptions: Optional[str] = typer.Option(None, "--corruptions", help="Also evaluate under corruptions: brightness,contrast,gaussian_noise,motion_blur,jpeg,fog or all."),
    severity: Optional[str] = typer.Option(None, "--severity", help="Corruption severity 1..5, or a list such as 1,3,5 (default 3)."),
    fail_under: Optional[List[str]] = typer.Option(None, "--fail-under", metavar="<gate>", help="Gate, repeatable: mIoU=0.60, class:road=0.90, class:road:biou=0.5. Exit 1 when one falls short."),
    compare: Optional[Path] = typer.Option(None, "--compare", parser=_in_path, metavar="<path>", help="An earlier report.json: print per-class deltas against it."),
    overrides: Optional[List[str]] = _overrides("inference=tta device=cpu"),
    config_dir: Optional[Path] = ConfigDir,
    print_cfg: bool = PrintCfg,
) -> None:
    """Per-class IoU/BIoU/Acc/Precision/Dice, mIoU & co. of a model or of predictions on a dataset split."""
    values = {"ckpt": _models(ckpt), "model": _models(model), "predictions": predictions, "data": data, "split": split, "json": json_out,
              "out": out, "worst": worst, "corruptions": corruptions.split(",") if corruptions is not None else None,
              "severity": severity, "fail_under": list(fail_under) if fail_under else None, "compare": compare}
    _execute("eval", overrides, values, config_dir, print_cfg)


# ----------------------------------------------------------------------------- predict
@app.command("predict", cls=_OnceOnly)
def predict(
    inputs: Optional[List[str]] = typer.Argument(None, help="Image/video files, folders, globs or - (paths on stdin), then optional Hydra overrides, e.g. inference=slide writers=4.", show_default=False),
    ckpt: Optional[List[Path]] = typer.Option(None, "--ckpt", parser=_in_path, metavar="<path>", help="Checkpoint (.ckpt) to predict with; repeat it to predict with the ensemble of several (their probabilities averaged)."),
    model: Optional[List[Path]] = typer.Option(None, "--model", parser=_in_path, metavar="<path>", help="Exported model (.onnx or TorchScript .pt from `segcli export`) to predict with, instead of --ckpt; repeatable, as --ckpt."),
    out: Path = typer.Option(None, "--out", parser=_out_path, metavar="<path>", help="Output directory: <rel>.png masks, overlays/, probs/, uncertainty/, areas.csv."),
    list_file: Optional[Path] = typer.Option(None, "--list", parser=_in_path, metavar="<path>", help="Text file with one input path per line."),
    save: Optional[str] = typer.Option(None, "--save", help="Outputs, comma-separated: mask,overlay,prob,uncertainty,areas (default mask,overlay)."),
    palette_png: bool = typer.Option(False, "--palette-png", help="Indexed PNG masks: ids stored, palette colours shown by viewers."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Overlay opacity of the class colours, 0..1 (default 0.5)."),
    legend: bool = typer.Option(False, "--legend", help="Draw the present classes' colours and names on overlays."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Print one JSON line per image (input, outputs, class fractions) instead of mask paths."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs whose outputs all exist (resume a killed run)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: process every N-th input starting at I (0-based), for job arrays."),
    on_error: Optional[str] = typer.Option(None, "--on-error", help="skip (default): report unreadable inputs, continue, exit 3 at the end; fail: stop at once."),
    smooth: Optional[float] = typer.Option(None, "--smooth", help="Videos: EMA weight A of the previous frames' class probabilities, 0 <= A < 1 (0 = off)."),
    frame_masks: bool = typer.Option(False, "--frame-masks", help="Videos: also write a mask PNG per frame under OUT/<video>/."),
    config_dir: Optional[Path] = ConfigDir,
    print_cfg: bool = PrintCfg,
) -> None:
    """Predict class-id masks, overlays, probabilities, uncertainty and class areas for images and videos."""
    paths, overrides = _split_inputs(inputs or [])
    flags = {"palette_png": palette_png, "legend": legend, "jsonl": jsonl, "skip_existing": skip_existing,
             "video.masks": frame_masks}
    values = {"ckpt": _models(ckpt), "model": _models(model), "out": out, "inputs": paths, "list": list_file,
              "save": save.split(",") if save is not None else None, "alpha": alpha, "shard": shard, "on_error": on_error,
              "smooth": smooth, **{k: v or None for k, v in flags.items()}}
    _execute("predict", overrides, values, config_dir, print_cfg)


def _split_inputs(args: list[str]) -> tuple[list[str], list[str]]:
    """Arguments that look like `key=value` (and are no existing path, nor a pattern matching files: 'd=1/*.png') are
    overrides; one whose part before the '=' holds a folder separator (photos/img=1.png) is a path, as no config key
    has one (a missing file is then 'not found', not an unknown key)."""
    import glob

    paths, overrides = [], []
    for arg in args:
        key = arg.partition("=")[0]
        looks_like_override = "/" not in key and os.sep not in key and ("=" in arg or arg.startswith("~"))  # ~key
        found = os.path.exists(arg) or (glob.has_magic(arg) and bool(glob.glob(arg, recursive=True)))
        (overrides if looks_like_override and not found else paths).append(arg)
    return paths, overrides


# ----------------------------------------------------------------------------- export
@app.command("export", cls=_OnceOnly)
def export(
    ckpt: Optional[List[Path]] = typer.Option(None, "--ckpt", parser=_in_path, metavar="<path>", help="Checkpoint (.ckpt) to export (one)."),
    fmt: str = typer.Option(None, "--format", help="Export format: onnx (default) or torchscript."),
    out: Optional[Path] = typer.Option(None, "--out", parser=_out_path, metavar="<path>", help="Output file (default: next to the checkpoint, .onnx or .pt)."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset version (default 17)."),
    half: bool = typer.Option(False, "--half", help="Export float16 for a GPU (needs a CUDA device)."),
    argmax: bool = typer.Option(False, "--argmax", help="Bake the argmax into the model: uint8 class ids out instead of logits."),
    verify_images: Optional[Path] = typer.Option(None, "--verify-images", parser=_in_path, metavar="<path>", help="Images to verify on (default: the checkpoint's val split)."),
    benchmark: bool = typer.Option(False, "--benchmark", help="Also time torch eager vs the exported model on the first verification image (at its size times the model's input_scale, padded to the size multiple)."),
    overrides: Optional[List[str]] = _overrides("opset=18 verify.max_rel_logit_diff=1e-3"),
    config_dir: Optional[Path] = NoConfigDir,
    print_cfg: bool = PrintCfg,
) -> None:
    """Export to ONNX or TorchScript and verify it against the PyTorch model on real images."""
    if ckpt and len(ckpt) > 1:  # (a single-value option keeps the last: it exported that one without a word)
        raise typer.BadParameter("export writes one model from one checkpoint; run export once per checkpoint "
                                 "(predict and eval take several, as an ensemble)", param_hint="--ckpt")
    values = {"ckpt": _models(ckpt), "format": fmt, "out": out, "opset": opset, "verify_images": verify_images,
              "half": half or None, "argmax": argmax or None, "benchmark.enabled": benchmark or None}
    _execute("export", overrides, values, config_dir, print_cfg)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn failures into one line on stderr + a documented exit code."""
    from segcli.errors import stop_signals_raise

    _closed_streams()
    if argv is None:  # the process's own entry (a caller that passes argv keeps its own interpreter and stderr)
        _utf8_mode()
        from segcli.console import PeopleText, Results

        sys.stderr = PeopleText(sys.stderr)
        sys.stdout = Results(sys.stdout)
    try:
        with stop_signals_raise():  # SIGTERM/SIGHUP stop segcli like Ctrl-C, cleanups included
            _main(argv)
    except SystemExit as done:
        if argv is None and _was_distributed():  # the process's own entry (a caller that passes argv keeps running)
            _exit_now(done.code)
        raise


def _utf8_mode() -> None:
    """Run again in Python's UTF-8 mode where the file system's encoding is ASCII (a C/POSIX locale with
    PYTHONUTF8=0): there a non-ASCII name, from the command line or from a dataset card, cannot be opened ('not
    found', UnicodeEncodeError) and OpenCV crashes (SIGSEGV) drawing a class name that came from the command line.
    UTF-8 mode is what Python itself picks for those locales unless told not to; the arguments keep their bytes.
    What the user's PYTHONUTF8=0 asked for and can see stays as it was: the standard streams keep the locale's
    encoding (ASCII: a class name 'bâtiment' in a table is written 'b\\xe2timent', a path as its bytes), unless
    PYTHONIOENCODING says otherwise."""
    import codecs

    if sys.flags.utf8_mode or codecs.lookup(sys.getfilesystemencoding()).name != "ascii" or not sys.executable:
        return
    env = dict(os.environ)
    stream = sys.stdout if sys.stdout is not None else sys.stdin
    if not env.get("PYTHONIOENCODING") and getattr(stream, "encoding", None):
        env["PYTHONIOENCODING"] = f"{stream.encoding}:{getattr(stream, 'errors', None) or 'strict'}"
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-X", "utf8", *sys.orig_argv[1:]], env)
    except (OSError, ValueError):  # no interpreter to run again: go on in ASCII
        pass


def _closed_streams() -> None:
    """A standard stream the shell closed (`<&-`, `>&-`, `2>&-`) is None in Python, and its descriptor the next file
    opened gets, so that a library's writes to fd 1 or 2 would land in a checkpoint or a mask. Each such descriptor is
    held on /dev/null: a closed stdin reads as empty, a closed stderr loses the people-text (an error line included,
    the exit code stays), and a closed stdout, where the results would be lost, stops segcli at once with exit 3."""
    names = ("stdin", "stdout", "stderr")
    closed = [fd for fd, name in enumerate(names) if getattr(sys, name) is None]
    for fd in closed:
        try:
            held = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        except OSError:
            continue
        if held != fd:  # the descriptor is open after all (Python could not wrap it): leave it be
            os.close(held)
            continue
        os.set_inheritable(fd, True)  # as a standard stream is: the processes segcli starts get it too
        setattr(sys, names[fd], open(fd, "r" if fd == 0 else "w", closefd=False))
    if 1 in closed:
        _fail("stdout is closed (>&-), so the results could not be written; redirect it to a file or to /dev/null "
              "instead", 3)


def _current_folder() -> None:
    """A command that failed in a current folder deleted since the shell entered it: one line saying so, where Hydra's
    bare '[Errno 2] No such file or directory' read as a configuration error (exit 2). Checked once a command has
    failed, so that help and --version, which need no folder, answer there."""
    try:
        os.getcwd()
    except OSError as err:
        _fail(f"the current folder: {err.strerror} (deleted since the shell entered it?); cd into an existing folder "
              "and run again", 3)


def _was_distributed() -> bool:
    """True in a process of a torch.distributed group: eval under torchrun (its group is left by now) or a
    Lightning DDP process (Lightning leaves its group in an exit handler)."""
    evaluation = sys.modules.get("segcli.evaluation.distributed")
    dist = sys.modules.get("torch.distributed")
    return bool(evaluation is not None and evaluation.JOINED) or bool(
        dist is not None and dist.is_available() and dist.is_initialized())


def _exit_now(code) -> None:
    """Exit with `code` the way Python does (wait for its threads, run its exit handlers), skipping the C++
    destructors that run after that. A process that was in a gloo group can abort there, after its work is done and
    its group left ("terminate called without an active exception", SIGABRT; 1 run in 77 of a two-process eval on
    a loaded 2-core machine), and torchrun then stops the other processes and reports the whole run failed."""
    import atexit
    import threading

    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("text"), as Python prints it
        sys.stderr.write(f"{code}\n")
        code = 1
    if threading.current_thread() is threading.main_thread() and hasattr(threading, "_shutdown"):
        threading._shutdown()  # Python's own first step of exiting: joins the threads that are not daemons
    atexit._run_exitfuncs()  # its second
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _main(argv: list[str] | None) -> None:
    from segcli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, SegcliError, stop_exit_code

    debug = os.environ.get("SEGCLI_DEBUG", "") not in ("", "0")
    try:
        code = app(args=argv, prog_name="segcli", standalone_mode=False)
        sys.stdout.flush()  # a full disk or a closed pipe behind stdout fails here, not at interpreter exit
    except (_StdoutClosed, BrokenPipeError):
        _stdout_closed()
    except KeyboardInterrupt:
        _fail("interrupted", stop_exit_code() or EXIT_INTERRUPTED)
    except Exception as err:
        if debug:  # the traceback, then the same line and exit code as without it (a CI job's checks stay valid)
            import traceback

            traceback.print_exc()
        if stop_exit_code():  # a failure while stopping (a data-loader worker killed with us)
            _fail("terminated", stop_exit_code())
        if type(err).__name__ == "NoArgsIsHelpError":  # `segcli`, `segcli prepare`: the help, as Click shows it
            err.show()
            sys.exit(err.exit_code)
        if hasattr(err, "format_message") and hasattr(err, "exit_code"):  # a usage error from Typer/Click
            _fail(_click_message(err, [str(a) for a in (sys.argv[1:] if argv is None else argv)]), err.exit_code)
        _current_folder()  # a failure in a deleted current folder (help and --version need none, so never fail)
        if isinstance(err, SegcliError):
            _fail(err.message, err.exit_code)
        from segcli.errors import EXIT_USAGE, address_limit, environment_limit, import_failed, out_of_memory

        limit = environment_limit(err)  # a limit of this process (ulimit -n, -v), not segcli's or its settings' fault
        if limit:
            _fail(limit, EXIT_USAGE)
        if isinstance(err, OSError) and err.filename:
            if err.errno in (errno.EEXIST, errno.ENOTDIR):  # a folder could not be made there: say why
                from segcli.inference.io import in_the_way

                why = in_the_way(err.filename)
                if why is not None:
                    _fail(why, 3)
            _fail(f"{err.filename}: {err.strerror or err}; check the path, permissions and free space", 3)
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
            _flushed_or_dropped()
            if err.errno == errno.EFBIG:
                _fail(f"cannot write the output ({err.strerror or err}): the file-size limit (ulimit -f) is reached; "
                      "raise it, or send stdout elsewhere", 3)
            _fail(f"cannot write the output ({err.strerror or err}); check free space and where stdout goes", 3)
        given = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
        missing = getattr(err, "full_key", None) if type(err).__name__ in ("ConfigAttributeError", "ConfigKeyError") else None
        if missing and any(a == "--config-dir" or a.startswith("--config-dir=") for a in given):
            _fail(f"config key '{missing}' is missing: an option file under --config-dir that leaves it out? Start "
                  "that file with `defaults: [<the packaged option>, _self_]` (e.g. [unet, _self_] under model/) to "
                  "inherit the packaged keys, or add the key", EXIT_USAGE)
        command = next((a for a in given if not a.startswith("-")), "")
        memory = out_of_memory(err, command)
        if memory:
            _fail(memory, EXIT_USAGE)
        dependency = import_failed(err)
        if dependency:  # a package missing or broken in this environment: not a bug of segcli's
            _fail(dependency, EXIT_USAGE)
        rerun = "" if debug else " (rerun with SEGCLI_DEBUG=1 for the traceback)"
        if address := address_limit():  # libraries fail oddly near it ('error return without exception set')
            rerun += f"; this process's address-space limit (ulimit -v: {address}) may be the cause"
        _fail(f"internal error: {type(err).__name__}: {err}{rerun}", EXIT_INTERNAL)
    if code == EXIT_INTERRUPTED:  # Typer turns Ctrl-C into this code when not in standalone mode
        _fail("interrupted", stop_exit_code() or EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


_WRITE_ERRNOS = {28, 122, 30, 32, 27}  # ENOSPC, EDQUOT, EROFS, EPIPE, EFBIG: writing results failed, not segcli


def _flushed_or_dropped() -> None:
    """After a write failed: stdout's pending text, written if it can be; if it cannot (the failure was stdout's),
    dropped by pointing stdout at /dev/null, or Python's flush at exit would fail again ('Exception ignored …',
    exit 120)."""
    try:
        sys.stdout.flush()
        return
    except (OSError, ValueError):
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _click_message(err, given: list[str]) -> str:
    """Click's usage error (a bad option value, a missing option, an unknown one) as segcli's one line, with where
    to look for the fix: Click's own format spans four lines (usage, hint, blank, error). An unknown option that is
    the start of a file's name given (-img.png read as -i) says how to give that path."""
    ctx = getattr(err, "ctx", None)
    where = f"; see '{ctx.command_path} {ctx.help_option_names[0]}'" if ctx is not None and ctx.help_option_names else ""
    option = getattr(err, "option_name", None)
    path = next((a for a in given if option and a.startswith(option) and os.path.lexists(a)), None)
    if type(err).__name__ == "NoSuchOption" and path is not None:
        where = f"; {path} is a path? write it as ./{path}, or after --{where}"
    elif type(err).__name__ == "NoSuchOption" and option and ctx is not None and len(ctx.command_path.split()) == 2:
        # (not prepare's subcommands: their config is one, and most of its keys are read by some formats only)
        hint = _as_override(ctx.command_path.split()[1:2], option)
        if hint:  # Click's "(Possible options: --from, --help)" for --lr would point away from it
            return f"No such option: {option}{hint}{where}"
    return f"{err.format_message().rstrip('.')}{where}"


def _as_override(command: list[str], option: str) -> str:
    """For an unknown `--data` or `--max-epochs`: "; settings are key=value overrides: data.root=DIR" naming the
    config keys the option's name matches (a key, a key's last part, or a config group), else ''."""
    from segcli.config import _packaged_keys, _primary
    from segcli.errors import SegcliError

    name = option.lstrip("-").replace("-", "_")
    try:
        keys, groups = _packaged_keys(command[0]), _primary(command[0])[0]
    except (IndexError, OSError, ValueError, SegcliError):  # (a command without a config; an unreadable conf/)
        return ""
    if name == "data" and "data.root" in keys:
        fits = ["data.root=DIR"]
    elif name in groups:
        fits = [f"{name}=OPTION"]
    else:
        fits = [f"{key}=VALUE" for key in sorted(keys) if not keys[key] and (key == name or key.endswith("." + name))]
    return f"; settings are key=value overrides: {' or '.join(fits[:3])}" if fits else ""


def _stdout_closed() -> None:
    """stdout's reader exited early: what was not printed yet is lost (and predict stops), so exit 3 like any output
    that cannot be written, with one line and no traceback; Python's own complaint when it flushes stdout at exit is
    avoided by pointing stdout at /dev/null."""
    _flushed_or_dropped()
    _fail("stdout: the reader closed the pipe (Broken pipe) before segcli finished, so the results after that point "
          "were not written; let the reader read everything, or redirect stdout to a file", 3)


def _fail(message: str, code: int) -> None:
    from segcli.console import first_process
    from segcli.errors import EXIT_INTERRUPTED, stop_exit_code, stop_line

    stopped = code == EXIT_INTERRUPTED or code == stop_exit_code()
    if stopped and not first_process():  # the run's other processes stop with it: its first one says so, once
        sys.exit(code)
    if stopped:
        sys.stderr.write(f"{stop_line(code)}\n")
    else:
        one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
        try:
            sys.stderr.write(f"segcli: error: {one_line}\n")
            sys.stderr.flush()
        except OSError:  # stderr went into the closed pipe too (`2>&1 | head`)
            pass
    sys.exit(code)
