"""Model evaluation by 2 processes (torchrun, gloo on the CPU) equals 1 process exactly.

tests/eval/test_distributed.py covers scoring saved predictions; this runs the network itself through the
sharded predictor, on an odd number of images (5), so that a sampler padding the shards with a repeated
image would change the counts.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
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


_EXIT_PROBE = """
import atexit, ctypes, sys
from pathlib import Path

state, marker = sys.argv[1], Path(sys.argv[2])
libc = ctypes.CDLL(None)
# stands in for the C++ destructor that aborts at exit in a process that was in a gloo group
libc.__cxa_atexit(ctypes.cast(libc.abort, ctypes.c_void_p), None, None)
atexit.register(marker.write_text, "Python's exit handlers ran")
if state == "eval under torchrun":
    from segcli.evaluation import distributed
    distributed.JOINED.append(True)  # what distributed.setup records when it creates the group
elif state == "a live group":  # a Lightning DDP process: Lightning leaves its group in an exit handler
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{marker}.store", rank=0, world_size=1)
sys.argv = ["segcli", "--version"]
from segcli.cli import main
import threading, time
threading.Thread(target=lambda: (time.sleep(1.5), Path(f"{marker}.thread").write_text("done"))).start()
main()
"""


@pytest.mark.parametrize("state", ["eval under torchrun", "a live group", "no group"])
def test_a_process_that_was_in_a_group_exits_past_the_destructors(state, tmp_path):
    """About 1 in 80 two-process evals on a loaded 2-core machine ended with rank 1 aborting after Python had
    finished ('terminate called without an active exception'), so torchrun reported a failure after a correct
    report. A process that was in a group now exits right after Python's exit handlers."""
    marker = tmp_path / "marker"
    proc = subprocess.run([sys.executable, "-c", _EXIT_PROBE, state, str(marker)], capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.startswith("segcli "), proc.stderr[-2000:]
    assert marker.read_text() == "Python's exit handlers ran"
    assert (tmp_path / "marker.thread").read_text() == "done"  # a thread still working was waited for
    if state == "no group":  # the stand-in does abort a plain exit: the others test something
        assert proc.returncode == -signal.SIGABRT
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]
