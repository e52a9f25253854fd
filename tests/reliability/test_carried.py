"""Three carried defects: an ensemble member given twice as a byte copy of its file, two evals writing one --out at
once, and a newline in a file name on stdout (README names --jsonl as the safe form)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from helpers_reliability import assert_clean, noise, only_error, write_image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def other_ckpt(model_ckpt, tmp_path_factory) -> Path:
    """model_ckpt with its weights moved by seeded noise: another model of the same classes and architecture."""
    import torch

    ckpt = torch.load(model_ckpt, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(1)
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point() and "running" not in key:
            value.add_(0.5 * value.std().nan_to_num() * torch.randn(value.shape, generator=generator))
    path = tmp_path_factory.mktemp("other_model") / "other.ckpt"
    torch.save(ckpt, path)
    return path


def test_a_byte_copy_of_an_ensemble_member_is_refused(cli, model_ckpt, other_ckpt, tiny_data, tmp_path):
    copy = tmp_path / "copy.ckpt"
    shutil.copyfile(model_ckpt, copy)  # same bytes, another inode: neither a link nor another spelling of the path
    named = f"{copy}: given twice (a byte copy of {model_ckpt}); an ensemble names each model once"
    code, out, err = cli("eval", "--ckpt", model_ckpt, "--ckpt", other_ckpt, "--ckpt", copy, "--out", tmp_path / "e")
    only_error(code, err, 2, named)
    assert out == "" and not (tmp_path / "e").exists()
    images = write_image(tmp_path / "in" / "a.png", noise(32, 40)).parent
    code, out, err = cli("predict", "--ckpt", model_ckpt, "--ckpt", copy, images, "--out", tmp_path / "p")
    only_error(code, err, 2, named)
    assert out == "" and not (tmp_path / "p").exists()

    code, _, err = cli("eval", "--ckpt", model_ckpt, "--ckpt", other_ckpt, "--json", tmp_path / "ok.json")
    assert code == 0, err  # two models: not refused, whatever their sizes


def test_a_second_eval_into_the_same_out_stops_and_the_report_stays_whole(cli, model_ckpt, other_ckpt, tmp_path,
                                                                           monkeypatch):
    """Eval B into --out while eval A renames its report files there (B runs in the middle of A's renames): B
    stops with exit 2 naming the folder, and --out holds A's files only. Unheld, B wrote all its files and A's
    later renames then left B's confusion.csv beside A's report.json, both exiting 0."""
    ref, out = tmp_path / "ref", tmp_path / "out"
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--out", ref)
    assert code == 0, err
    real_replace, second = os.replace, []

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if not second and Path(dst).parent == out:  # A has put its first file in place
            second.append(cli("eval", "--ckpt", other_ckpt, "--out", out))

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--out", out)
    monkeypatch.undo()
    assert code == 0, err
    assert second, "eval A put no file into --out"
    code_b, out_b, err_b = second[0]
    only_error(code_b, err_b, 2, f"--out {out}: another segcli eval is writing its reports into this folder now")
    assert out_b == ""
    names = sorted(p.name for p in ref.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:  # every file is A's: what A alone wrote
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert_clean(out)


def test_a_newline_in_a_file_name_and_jsonl(cli, model_ckpt, tmp_path):
    """A path on stdout is written as it is, so a newline in it splits its line; --jsonl keeps it one record, and
    README says so where stdout's results are described."""
    image = write_image(tmp_path / "in" / "a\nb.png", noise(32, 40))
    code, out, err = cli("predict", "--ckpt", model_ckpt, image.parent, "--out", tmp_path / "p")
    assert code == 0, err
    assert out.splitlines() == [str(tmp_path / "p" / "a"), "b.png"]  # one result, two lines
    code, out, err = cli("predict", "--ckpt", model_ckpt, image.parent, "--out", tmp_path / "j", "--jsonl")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["outputs"]["mask"] for r in records] == [str(tmp_path / "j" / "a\nb.png")]

    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "a newline in a file name splits its line in two" in readme  # Output streams
    assert "so `--jsonl` is the safe form for a pipeline over any file names" in readme  # Predict
