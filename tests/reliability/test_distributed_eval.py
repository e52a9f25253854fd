"""Model evaluation by 2 processes (torchrun, gloo on the CPU) equals 1 process exactly.

tests/eval/test_distributed.py covers scoring saved predictions; this runs the network itself through the
sharded predictor, on an odd number of images (5), so that a sampler padding the shards with a repeated
image would change the counts.
"""

from __future__ import annotations

import json

from helpers_cli import torchrun_segcli
from helpers_reliability import assert_clean


def test_two_process_model_eval_equals_one(cli, model_ckpt, tiny_data, tmp_path):
    args = ["eval", "--ckpt", str(model_ckpt), "--data", str(tiny_data), "--split", "train"]
    code, _, err = cli(*args, "--out", tmp_path / "one")
    assert code == 0, err
    proc = torchrun_segcli(args + ["--out", tmp_path / "two"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr  # no rank aborted at exit (the process group is left cleanly)
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert one["num_images"] == two["num_images"] == 5
    assert one == two
    for name in ("per_image.csv", "per_class.csv", "confusion.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert_clean(tmp_path)
