"""Command-line arguments that look like something else: a pattern under a folder named key=value (date=2024-01-01/),
a file whose name starts with '-', a sweep of values that need quoting, and the chmod fix for such a name."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest
from predict_helpers import scene

from segcli.errors import ConfigError


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(scene(40, 56, 0), cv2.COLOR_RGB2BGR))


def test_a_pattern_under_a_folder_named_key_value_is_an_input(ckpt, cli, tmp_path, monkeypatch):
    """Before: 'unknown config key 'date'' (exit 2) for a quoted glob, though the README takes quoted globs."""
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "date=2024-01-01" / "a.png")
    code, _, err = cli("predict", "date=2024-01-01/*.png", "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "a.png").is_file()


def test_a_missing_file_under_such_a_folder_is_told_how_to_give_it(ckpt, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("predict", "date=2024-01-01/b.png", "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 2
    assert "write it as ./date=2024-01-01/b.png" in err


def test_a_file_whose_name_starts_with_a_dash_is_told_how_to_give_it(ckpt, cli, tmp_path, monkeypatch):
    """Before: Click's 'No such option: -i', naming an option nobody typed and no fix."""
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "-img.png")
    code, _, err = cli("predict", "--ckpt", ckpt, "-img.png", "--out", tmp_path / "out")
    assert code == 2
    assert "-img.png is a path? write it as ./-img.png, or after --" in err
    code, _, err = cli("predict", "--ckpt", ckpt, "--out", tmp_path / "out", "./-img.png")
    assert code == 0, err


@pytest.mark.parametrize("value, parts", [("/data/Straße,/data/syn", ["/data/Straße", "/data/syn"]),
                                          ("~/x,/data/syn", ["~/x", "/data/syn"]),
                                          ("/data/Straße (2)", ["/data/Straße (2)"])])
def test_values_quoted_for_hydra_keep_a_sweeps_values_apart(value, parts):
    """Before: one pair of quotes around 'a,b' made the sweep one value (a sweep of 2 x 2 jobs ran 2)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from segcli.config import quote_values

    (override,) = OverridesParser.create().parse_overrides(quote_values([f"data.root={value}"]))
    values = [getattr(v, "text", v) for v in override.value().list] if override.is_sweep_override() else \
        [override.value()]
    assert values == parts


def test_the_chmod_fix_for_a_protected_export_named_with_a_dash_works(tmp_path, monkeypatch):
    from segcli.commands.export import _check_not_protected

    monkeypatch.chdir(tmp_path)
    out = Path("-e.onnx")
    out.write_bytes(b"model")
    out.chmod(0o444)
    with pytest.raises(ConfigError) as refused:
        _check_not_protected(SimpleNamespace(out=str(out)), out)
    fix = str(refused.value).split("(")[1].split(")")[0]
    assert fix == "chmod u+w ./-e.onnx"
    assert subprocess.run(fix, shell=True, cwd=tmp_path).returncode == 0
    assert out.stat().st_mode & 0o200


def test_inputs_checkpoints_and_outputs_holding_dollar_brace_are_paths(ckpt, cli, tmp_path, monkeypatch):
    """Option values went into the config as OmegaConf interpolations: 'p${out}.png' was read as 'p<--out>.png'
    ('input not found', or another file read silently), an ensemble member 'm${out}.ckpt' likewise, and
    --out 'o_${save}' wrote into "o_['mask']"."""
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "p${out}.png")
    _image(tmp_path / "d${out}" / "b.png")
    import torch

    other = torch.load(ckpt, map_location="cpu", weights_only=False)  # another member: an ensemble's two models
    name = next(k for k, v in other["state_dict"].items() if v.is_floating_point())
    other["state_dict"][name] = other["state_dict"][name] + 0.01
    torch.save(other, tmp_path / "m${out}.ckpt")
    code, _, err = cli("predict", "p${out}.png", "d${out}", "--ckpt", "m${out}.ckpt", "--ckpt", ckpt,
                       "--out", "o_${save}", "--save", "mask")
    assert code == 0, err
    assert (tmp_path / "o_${save}" / "p${out}.png").is_file() and (tmp_path / "o_${save}" / "b.png").is_file()
