"""segcli export at the edges of its options and situations: a run directory as --ckpt."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("level", ["run", "checkpoints"])
def test_a_folder_as_ckpt_is_named_as_one_with_its_checkpoint(level, ckpt, tmp_path, cli):
    """A run directory (or its checkpoints/ folder) given as --ckpt was 'checkpoint not found', of a path that is
    there: the user was left to guess that a file is wanted, and which one."""
    folder = ckpt.parent.parent if level == "run" else ckpt.parent
    out = tmp_path / "model.onnx"
    code, stdout, err = cli("export", "--ckpt", folder, "--out", out)
    assert code == 3 and stdout == "" and not out.exists()
    assert err.strip().splitlines() == [f"segcli: error: --ckpt {folder}: a folder, not a checkpoint; pass --ckpt {ckpt}"]
