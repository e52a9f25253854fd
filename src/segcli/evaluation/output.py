"""Where an eval report goes: tables on stdout (or JSON with --json -), files under --out DIR.

    DIR/report.json     the report (segcli.reports.report_dict)
    DIR/per_class.csv   one row per class          DIR/per_image.csv   IoU per class per image
    DIR/report.md       Markdown for PR comments   DIR/confusion.csv   raw pixel counts
    DIR/confusion.png   row-normalised heat map    DIR/worst/NN_<stem>.png   --worst K panels
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from segcli.console import counted, info, print_wide, stdout_console
from segcli.inference.io import atomic_write_bytes, write_png


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _write_report(path: Path, text: str) -> None:
    """--json FILE. A rename over a path replaces what is there: written so, /dev/stdout (or a symbolic link) became a
    plain file, and `--json >(jq ...)` failed. So: this process's stdout or stderr (/dev/stdout, /dev/stderr) is
    written to through its stream, a pipe or device is written into, a symbolic link's target is replaced (the
    link stays), and a file atomically (temp file + rename)."""
    import os
    import stat
    import sys

    from segcli.errors import DataError

    try:
        target = path.stat()
    except OSError:
        target = None
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        try:
            mine = os.fstat(fd)
        except OSError:
            continue
        if target is not None and (target.st_dev, target.st_ino) == (mine.st_dev, mine.st_ino):
            stream.write(text)
            stream.flush()
            return
    if target is not None and not stat.S_ISREG(target.st_mode) and not stat.S_ISDIR(target.st_mode):
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as err:
            raise DataError(f"{path}: cannot write it ({err.strerror or err}); check free space and permissions") from None
        return
    _write_text(path.resolve() if path.is_symlink() else path, text)


def emit(cfg, report: dict, acc, card) -> None:
    """Print the report and write every requested file (rank 0 only)."""
    from segcli.reports import compare_table, corruption_table, metrics_table

    text = json.dumps(report, indent=2) + "\n"
    if cfg.json and cfg.json != "-":  # the files first: a stdout that fails (a reader gone, a full disk) lost them
        _write_report(Path(cfg.json), text)
        info(f"eval: report written to {cfg.json}")
    if cfg.out:
        write_files(Path(cfg.out), report, acc, card, cfg.split, text)
        info(f"eval: report.json, report.md, per_class.csv, per_image.csv, confusion.csv/.png"
             f"{', worst/' if report.get('worst') else ''} written to {cfg.out}")
    if cfg.json == "-":
        print(text, end="")
    else:
        console = stdout_console()
        count = report["num_images"]
        print_wide(console, metrics_table(report, title=f"{card.name} / {cfg.split}: {counted(count, 'image')}"))
        if report.get("corruptions"):
            print_wide(console, corruption_table(report["corruptions"], report["mIoU"]))
        if report.get("compare"):
            print_wide(console, compare_table(report["compare"]))
        for entry in report.get("worst") or []:
            console.print(f"worst: {entry['image']}  mIoU {entry['mIoU'] * 100:.2f}  {entry['file']}", markup=False)


@contextlib.contextmanager
def held_out(out):
    """Hold --out DIR for this eval from before its inference until its report files are in place. A second `segcli
    eval` into the same folder meanwhile (two evals of other models started together) renamed its files among this
    one's: report.json of one run beside per_class.csv of the other, both exiting 0. An advisory lock on the folder,
    as `segcli train` holds its run directory (flock: released by the system when the process ends in any way, and
    leaving no file behind); the second eval stops with exit 2 before any inference. Only the process that writes
    the reports holds it (rank 0 under torchrun); its refusal stops every rank. --out is made here when new, and
    removed again when nothing was written into it. Where flock does not exist (Windows) nothing is held."""
    from segcli.errors import SegcliError
    from segcli.evaluation import distributed
    from segcli.inference.io import remove_empty

    handle, created, failure = None, [], None
    if out and distributed.is_main():
        try:
            handle, created = _hold(Path(out))
        except SegcliError as err:
            failure = err
    distributed.fail_together(failure)
    try:
        yield
    finally:
        remove_empty(created)  # before the lock goes: another eval may claim the folder once it does
        if handle is not None:
            os.close(handle)  # releases the lock


def _hold(out: Path) -> tuple[int | None, list[Path]]:
    """(the open folder holding the lock, or None where there is none; the folders made for it, deepest first)."""
    from segcli.errors import ConfigError, DataError
    from segcli.inference.io import in_the_way, missing_folders, remove_empty
    from segcli.runs import lock_folder

    try:
        import fcntl  # noqa: F401  (only to know that flock exists here)
    except ImportError:
        return None, []
    created = missing_folders(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = os.open(out, os.O_RDONLY)
    except OSError as err:
        remove_empty(created)
        raise DataError(f"--out {out}: " + (in_the_way(out) or f"cannot write the report files there "
                        f"({err.strerror or err}); give a folder you can write to")) from None
    try:
        held = lock_folder(handle)
    except BlockingIOError:
        os.close(handle)  # the folder is the other eval's now: nothing of it is removed
        raise ConfigError(f"--out {out}: another segcli eval is writing its reports into this folder now; wait for "
                          "it to finish, or give another --out") from None
    if not held:  # a file system without locks: eval goes on unheld, as on Windows
        from segcli.console import info

        info(f"eval: note: --out {out} is on a file system that keeps no locks: a second segcli eval writing "
             "there now would not be refused")
        os.close(handle)
        return None, created
    return handle, created


def worst_entries(acc) -> list[dict]:
    """The report's `worst` list: image key, its mIoU and the panel file under --out."""
    return [{"image": key, "mIoU": miou, "file": f"worst/{rank:02d}_{key.replace('/', '__')}.png"}
            for rank, (key, _index, miou, _pred) in enumerate(acc.worst(), 1)]


def write_files(out: Path, report: dict, acc, card, split: str, report_text: str) -> None:
    """Write every report file into `out`: all of them into a hidden staging folder first, then each renamed
    into place, so that a failure (a full disk) leaves no partial report."""
    import os
    import shutil

    from segcli.errors import DataError, stops_held
    from segcli.inference.io import in_the_way, missing_folders, remove_empty, staging_path, writing

    staging = staging_path(out, ".report")
    created = missing_folders(staging)  # the staging folder, and --out and its parents where they are new
    try:
        try:
            staging.mkdir(parents=True)
        except OSError as err:  # else the line named the hidden staging folder's report.json
            raise DataError(f"--out {out}: " + (in_the_way(out) or f"cannot write the report files there "
                            f"({err.strerror or err}); give a folder you can write to")) from None
        with writing(out):  # a full disk names --out, not the hidden staging folder's file
            _write_all(staging, report, acc, card, split, report_text)
        with stops_held():  # all files or none of them
            written = set()
            for path in sorted(staging.rglob("*")):
                if path.is_file():
                    target = out / path.relative_to(staging)
                    target.parent.mkdir(exist_ok=True)
                    os.replace(path, target)
                    written.add(target)
            _remove_stale_panels(out / "worst", written)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty(created)


def _remove_stale_panels(folder: Path, written: set) -> None:
    """Panels an earlier eval into the same --out left in worst/ (another K, other images, no --worst now): they
    would sit beside a report that does not list them, looking like this model's worst images."""
    import re

    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path not in written and path.is_file() and re.fullmatch(r"\d{2,}_.+\.png", path.name):
            path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def _write_all(out: Path, report: dict, acc, card, split: str, report_text: str) -> None:
    from segcli.evaluation.figures import confusion_image
    from segcli.reports import confusion_csv, markdown, per_class_csv, per_image_csv

    matrix = acc.cm.matrix.numpy()
    _write_text(out / "report.json", report_text)
    _write_text(out / "per_class.csv", per_class_csv(report))
    _write_text(out / "per_image.csv", per_image_csv(acc.images, card.classes))
    _write_text(out / "report.md", markdown(report, f"{card.name} / {split}"))
    _write_text(out / "confusion.csv", confusion_csv(matrix, card.classes))
    write_png(out / "confusion.png", confusion_image(matrix, card.classes))
    if acc.worst_k:
        write_worst(out, acc, card, split)


def write_worst(out: Path, acc, card, split: str) -> None:
    """Side-by-side panels of the K lowest-mIoU images."""
    from segcli.evaluation.figures import worst_panel
    from segcli.inference.io import read_image, read_mask

    pairs = card.pairs(split)
    ious = {s.index: s.iou for s in acc.images}
    for entry, (key, index, miou, pred) in zip(worst_entries(acc), acc.worst()):
        image_path, mask_path = pairs[index]
        image = read_image(image_path, value_range=card.image_range)
        panel = worst_panel(image, read_mask(mask_path), pred, card.palette, card.ignore_index,
                            card.classes, ious[index], f"{key}: mIoU {miou * 100:.2f}")
        write_png(out / entry["file"], panel)
