"""Folder locks (segcli.runs.lock_folder) on file systems that keep none: train and eval go on unheld."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest

from segcli.errors import ConfigError
from segcli.evaluation.output import _hold
from segcli.runs import held_run_dir, lock_folder


def _flock_failing_with(code: int):
    def flock(_fd, _op):
        raise OSError(code, os.strerror(code))
    return flock


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP])
def test_train_goes_on_where_the_file_system_keeps_no_locks(tmp_path, monkeypatch, capsys, code):
    monkeypatch.setattr(fcntl, "flock", _flock_failing_with(code))
    with held_run_dir(tmp_path, "give another --run-dir") as held:
        assert held == tmp_path
    assert capsys.readouterr().err == (f"train: note: {tmp_path} is on a file system that keeps no locks: a second "
                                       "segcli train started in it now would not be refused\n")


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP])
def test_eval_goes_on_unheld_where_the_file_system_keeps_no_locks(tmp_path, monkeypatch, capsys, code):
    monkeypatch.setattr(fcntl, "flock", _flock_failing_with(code))
    handle, created = _hold(tmp_path / "new" / "out")
    assert handle is None
    assert created == [tmp_path / "new" / "out", tmp_path / "new"]  # made for it, so removed when left empty
    assert "eval: note: --out " + str(tmp_path / "new" / "out") + " is on a file system that keeps no locks" in \
        capsys.readouterr().err


def test_a_folder_held_by_another_run_is_still_refused(tmp_path, capsys):
    other = os.open(tmp_path, os.O_RDONLY)
    try:
        assert lock_folder(other)
        with pytest.raises(ConfigError, match="another segcli train is running in this run directory now; wait"):
            with held_run_dir(tmp_path, "wait for it"):
                pass
        with pytest.raises(ConfigError, match="another segcli eval is writing its reports"):
            _hold(tmp_path)
    finally:
        os.close(other)
    with held_run_dir(tmp_path, "wait for it"):  # released: free again
        pass
    assert "keeps no locks" not in capsys.readouterr().err  # held: no note
