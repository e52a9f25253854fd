"""Limits a container or a CI runner sets on the process (ulimit -f, -n, -v): each failure they cause is one line
that names the limit and how to raise it, with the documented exit code. Before: a results file cut at the file-size
limit with exit 0 (stdout unbuffered, as PYTHONUNBUFFERED=1 makes it in many container images), exit 4 ('internal
error') for too many open files, and 'reinstall torch' for an address-space limit too low to load it."""

from __future__ import annotations

import json
import resource
import sys

import pytest
from helpers_cli import one_error_line
from helpers_cli import segcli_bytes as segcli

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux resource limits")


def _limited(kind: int, value: int):
    return lambda: resource.setrlimit(kind, (value, value))


@pytest.mark.parametrize("unbuffered", [{"PYTHONUNBUFFERED": "1"}, {}], ids=["unbuffered", "buffered"])
def test_results_cut_at_the_file_size_limit_are_exit_3(tiny_data, tmp_path, unbuffered):
    args = ["eval", "--predictions", tiny_data / "masks" / "val", "--data", tiny_data, "--json", "-"]
    whole = segcli(*args, cwd=tmp_path)
    assert whole.returncode == 0 and len(whole.stdout) > 1024, whole.stderr.decode()[-2000:]
    json.loads(whole.stdout)
    with open(tmp_path / "report.json", "wb") as out:
        proc = segcli(*args, cwd=tmp_path, env=unbuffered, stdout=out, stderr=-1,
                      preexec_fn=_limited(resource.RLIMIT_FSIZE, 1024))
    line = one_error_line(proc, 3, alone=True)
    assert line == ("segcli: error: cannot write the output (File too large): the file-size limit (ulimit -f) is "
                    "reached; raise it, or send stdout elsewhere")


def _hidden(context: BaseException) -> RuntimeError:
    """Lightning's later error hiding the data loader's: 'Please call iter(combined_loader) first.'"""
    try:
        raise RuntimeError("Please call iter(combined_loader) first.") from None
    except RuntimeError as err:
        err.__context__ = context
        return err


@pytest.mark.parametrize("make", [
    lambda: RuntimeError("Too many open files. Communication with the workers is no longer possible. Please increase "
                         "the limit using `ulimit -n` in the shell or change the sharing strategy"),  # torch's loader
    lambda: _hidden(OSError(24, "Too many open files")),  # its OSError behind Lightning's
], ids=["loader", "hidden"])
def test_too_many_open_files_names_the_limit(tiny_data, tmp_path, cli, monkeypatch, make):
    """`ulimit -n 32` with data.num_workers=2: exit 4, 'internal error: RuntimeError: Too many open files …' (and,
    at 12, Lightning's 'Please call iter(combined_loader) first.', the cause seen only with SEGCLI_DEBUG=1)."""
    import segcli.commands.train as train

    def fail(cfg, resume=False):
        raise make()

    monkeypatch.setattr(train, "run", fail)
    code, _, err = cli("train", f"data.root={tiny_data}", "experiment=smoke", "--run-dir", tmp_path / "run")
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"segcli: error: too many open files for this process's limit (ulimit -n: {limit}); raise it (e.g. "
        "ulimit -n 4096), or use fewer data-loader workers (data.num_workers=0)"), err


def test_loader_workers_an_open_file_limit_cannot_hold_are_refused_before_the_run(tiny_data, tmp_path):
    """`ulimit -n 18` with data.num_workers=2: the workers failed at the first batch, printing their own tracebacks
    (EOFError, AttributeError) before segcli's line, and the run directory stayed (no descriptor left to remove it).
    Now: one line before the run directory exists. A soft limit below the need, with room under the hard one, is
    raised: the run trains."""
    args = ["train", f"data.root={tiny_data}", "experiment=smoke", "data.num_workers=2", "trainer.max_epochs=1"]
    proc = segcli(*args, "--run-dir", tmp_path / "run", cwd=tmp_path, preexec_fn=_limited(resource.RLIMIT_NOFILE, 18))
    line = one_error_line(proc, 2, alone=True)
    assert line == ("segcli: error: data.num_workers=2 needs about 40 open files, and this process may open 18 "
                    "(ulimit -n); raise it (e.g. ulimit -n 4096), or load in the main process (data.num_workers=0)")
    assert not (tmp_path / "run").exists()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 64:
        pytest.skip("the hard open-file limit leaves no room to raise the soft one")
    proc = segcli(*args, "--run-dir", tmp_path / "soft", cwd=tmp_path,
                  preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (18, hard)))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert (tmp_path / "soft" / "checkpoints" / "last.ckpt").is_file()


def test_an_address_space_limit_too_low_for_torch_is_named_not_a_broken_install(tiny_data, tmp_path):
    proc = segcli("train", f"data.root={tiny_data}", "experiment=smoke", "--run-dir", tmp_path / "run", cwd=tmp_path,
                  preexec_fn=_limited(resource.RLIMIT_AS, 1_500_000_000))
    line = one_error_line(proc, 2)
    assert line.startswith("segcli: error: cannot load a library within this process's address-space limit (ulimit "
                           "-v: 1.5 GB; ") and "reinstall" not in line, line
