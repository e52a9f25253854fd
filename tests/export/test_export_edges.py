"""segcli export at the edges of its options and situations: a run directory as --ckpt."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("level", ["run", "checkpoints"])
def test_a_folder_as_ckpt_is_named_as_one_with_its_checkpoint(level, ckpt, tmp_path, cli):
    """A run directory (or its checkpoints/ folder) given as --ckpt (export) or --model (predict, eval) was 'checkpoint
    not found' or 'model file not found', of a path that is there: the user was left to guess which file is wanted."""
    folder = ckpt.parent.parent if level == "run" else ckpt.parent
    out = tmp_path / "model.onnx"
    code, stdout, err = cli("export", "--ckpt", folder, "--out", out)
    assert code == 3 and stdout == "" and not out.exists()
    assert err.strip().splitlines() == [f"segcli: error: {folder}: a folder, not a model file; pass --ckpt {ckpt}"]
    code, stdout, err = cli("predict", ckpt, "--model", folder, "--out", tmp_path / "masks")  # and where models load
    assert code == 3 and stdout == "" and not (tmp_path / "masks").exists()
    assert err.strip().splitlines() == [f"segcli: error: {folder}: a folder, not a model file; pass --ckpt {ckpt}"]
