"""Run-level tables of `segcli predict`, written atomically at the end of a run.

areas.csv        input,class_id,class,pixels,fraction   one row per image and class; an image's
                 fractions sum to 1 (every pixel gets a class). Video frames are "clip.mp4#000012".
uncertainty.csv  rank,input,score,map                    images from least to most certain (score =
                 mean per-pixel entropy / log K, 0 = certain): the review and relabelling queue.
With --shard I/N the names get a ".shard-I-of-N" infix, so that job arrays sharing OUT do not collide.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from segcli.inference.io import atomic_write_bytes
from segcli.inference.outputs import Record


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


def write_areas(path: Path, records: list[Record], classes: list[str]) -> Path:
    rows = ((r.input, c, name, pixels, f"{fraction:.6f}")
            for r in records for c, (name, pixels, fraction) in enumerate(zip(classes, r.pixels, r.fractions())))
    return _write_csv(path, ["input", "class_id", "class", "pixels", "fraction"], rows)


def write_uncertainty(path: Path, records: list[Record]) -> Path:
    scored = sorted((r for r in records if r.uncertainty is not None), key=lambda r: (-r.uncertainty, r.input))
    rows = ((rank, r.input, f"{r.uncertainty:.6f}", r.outputs.get("uncertainty", ""))
            for rank, r in enumerate(scored, 1))
    return _write_csv(path, ["rank", "input", "score", "map"], rows)
