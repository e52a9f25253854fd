"""Run-level tables of `segcli predict`, written atomically at the end of a run.

areas.csv        input,class_id,class,pixels,fraction   one row per image and class; an image's
                 fractions sum to 1 (every pixel gets a class). Video frames are "clip.mp4#000012".
uncertainty.csv  rank,input,score,map                    images from least to most certain (score =
                 mean per-pixel entropy / log K, 0 = certain): the review and relabelling queue.
With --shard I/N the names get a ".shard-I-of-N" infix, so that job arrays sharing OUT do not collide.
A table already in OUT (an earlier run's) holds rows of inputs this run may not cover: `earlier_rows` reads them,
so that a run with --skip-existing keeps them (written before this run's rows; uncertainty ranks all rows anew).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from segcli.inference.io import atomic_write_bytes
from segcli.inference.outputs import Record


AREAS = ["input", "class_id", "class", "pixels", "fraction"]
UNCERTAINTY = ["rank", "input", "score", "map"]


def table_name(stem: str, shard: tuple[int, int] | None) -> str:
    return f"{stem}.csv" if shard is None else f"{stem}.shard-{shard[0]}-of-{shard[1]}.csv"


def _write_csv(path: Path, header: list[str], rows) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    # surrogateescape: a file name that is not UTF-8 (bytes kept as surrogates by Python) is written as its own bytes
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8", "surrogateescape"))
    return path


def earlier_rows(path: Path, header: list[str], covered) -> list[list[str]]:
    """The rows of the table at `path` (written by an earlier run) whose input `covered(input)` does not claim;
    [] when there is no such file or it is not a table with `header` (nothing of it can be kept then)."""
    try:
        text = path.read_bytes().decode("utf-8-sig", "surrogateescape")  # -sig: saved again by Excel (a BOM)
        rows = list(csv.reader(io.StringIO(text)))
    except (OSError, csv.Error):
        return []
    if not rows or rows[0] != header:
        return []
    column = header.index("input")
    return [row for row in rows[1:] if len(row) == len(header) and not covered(row[column])]


def same_classes(rows: list[list[str]], classes: list[str]) -> bool:
    """Whether areas.csv rows name the model's classes by the model's ids (rows of another model must not mix)."""
    return all(row[1].isdigit() and int(row[1]) < len(classes) and classes[int(row[1])] == row[2] for row in rows)


def write_areas(path: Path, records: list[Record], classes: list[str], keep: list[list[str]] = ()) -> Path:
    """areas.csv of `records`, after the `keep` rows (an earlier run's, of inputs this run does not cover)."""
    rows = ((r.input, c, name, pixels, f"{fraction:.6f}")
            for r in records for c, (name, pixels, fraction) in enumerate(zip(classes, r.pixels, r.fractions())))
    return _write_csv(path, AREAS, [*keep, *rows])


def write_uncertainty(path: Path, records: list[Record], keep: list[list[str]] = ()) -> Path:
    """uncertainty.csv of `records` and the `keep` rows (an earlier run's), all ranked from least to most certain."""
    scored = [(r.uncertainty, r.input, f"{r.uncertainty:.6f}", r.outputs.get("uncertainty", ""))
              for r in records if r.uncertainty is not None]
    for _, name, score, where in keep:
        try:
            scored.append((float(score), name, score, where))
        except ValueError:  # not a number: not a row segcli wrote
            continue
    scored.sort(key=lambda row: (-row[0], row[1]))
    return _write_csv(path, UNCERTAINTY, ((rank, *row[1:]) for rank, row in enumerate(scored, 1)))
