"""Ensembles: `--ckpt A --ckpt B` (or `--model` repeated) in predict and eval average the models' class
probabilities, each model with its own normalisation and input scale, as nnU-Net predicts with its k folds."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from helpers_eval import load_json, run_cli


def _variant(source, target, **meta) -> None:
    """A copy of checkpoint `source` with its weights moved by seeded noise and `meta` entries replaced."""
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(1)
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point() and "running" not in key:
            value.add_(0.05 * value.std().nan_to_num() * torch.randn(value.shape, generator=generator))
    ckpt["hyper_parameters"]["meta"].update(meta)
    torch.save(ckpt, target)


@pytest.fixture(scope="module")
def members(trained, tmp_path_factory):
    """(the trained checkpoint, a perturbed copy of it that sees its input at half size)."""
    other = tmp_path_factory.mktemp("ensemble") / "other.ckpt"
    _variant(trained["ckpt"], other, input_scale=0.5)
    return trained["ckpt"], other


def _averaged_ids(paths, image: np.ndarray) -> np.ndarray:
    """The ensemble's mask computed here from each model's own probabilities."""
    from segcli.inference.backends import load_predictor

    probs = sum(load_predictor(path, "cpu").logits([image]).softmax(1) for path in paths)
    return probs.argmax(1)[0].numpy()


def test_predict_averages_the_probabilities_and_eval_scores_the_same_masks(trained, members, tmp_path, capsys):
    val = trained["data"] / "images" / "val"
    preds = tmp_path / "preds"
    code, _, err = run_cli(["predict", "--ckpt", members[0], "--ckpt", members[1], val, "--out", preds,
                            "overlay=false"], capsys)
    assert code == 0, err
    images = sorted(val.rglob("*.png"))
    assert images
    differs = 0
    for path in images:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(preds / path.relative_to(val)), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask, _averaged_ids(members, image))
        differs += int((mask != _averaged_ids(members[:1], image)).sum())
    assert differs > 0  # the second model changed some pixels: the masks are not the first model's alone

    code, _, err = run_cli(["eval", "--ckpt", members[0], "--ckpt", members[1], "--json", tmp_path / "e.json"], capsys)
    assert code == 0, err
    ensemble = load_json(tmp_path / "e.json")
    assert ensemble["mode"] == "ckpt" and ensemble["model"] == [str(p.resolve()) for p in members]
    code, _, err = run_cli(["eval", "--predictions", preds, "--data", trained["data"], "--json", tmp_path / "p.json"],
                           capsys)
    assert code == 0, err
    assert load_json(tmp_path / "p.json")["mIoU"] == ensemble["mIoU"]


def test_exported_models_make_an_ensemble_too(trained, members, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "a.onnx"
    code, _, err = run_cli(["export", "--ckpt", members[0], "--format", "onnx", "--out", onnx], capsys)
    assert code == 0, err
    script = tmp_path / "b.pt"  # an ONNX file and a TorchScript one: the same ensemble as their checkpoints
    code, _, err = run_cli(["export", "--ckpt", members[1], "--format", "torchscript", "--out", script], capsys)
    assert code == 0, err
    runs = {"m.json": ["--model", onnx, "--model", script], "c.json": ["--ckpt", members[0], "--ckpt", members[1]]}
    for report, given in runs.items():
        code, _, err = run_cli(["eval", *given, "--json", tmp_path / report], capsys)
        assert code == 0, err
    exported, checkpoints = load_json(tmp_path / "m.json"), load_json(tmp_path / "c.json")
    assert exported["mode"] == "model" and exported["model"] == [str(onnx.resolve()), str(script.resolve())]
    assert exported["mIoU"] == pytest.approx(checkpoints["mIoU"], abs=1e-3)
    code, _, err = run_cli(["eval", "--model", onnx, "--ckpt", members[1], "--json", tmp_path / "x.json"], capsys)
    assert code == 2 and "eval needs exactly one of --ckpt CKPT, --model FILE" in err, err  # no mixing the two
    code, _, err = run_cli(["eval", "--model", onnx, "--model", onnx, "--data", trained["data"]], capsys)
    assert code == 2 and f"{onnx}: given twice" in err, err

    argmax = tmp_path / "ids.onnx"
    code, _, err = run_cli(["export", "--ckpt", members[0], "--format", "onnx", "--argmax", "--out", argmax], capsys)
    assert code == 0, err
    code, _, err = run_cli(["eval", "--model", onnx, "--model", argmax], capsys)
    assert code == 2 and f"{argmax}: this model returns class ids" in err and "without --argmax" in err, err
    assert len(err.strip().splitlines()) == 1


def test_models_of_other_classes_are_refused_before_any_work(trained, members, tmp_path, capsys):
    renamed = tmp_path / "renamed.ckpt"
    _variant(members[0], renamed, classes=[f"c{i}" for i in range(7)])
    for command in (["eval"], ["predict", trained["data"] / "images" / "val", "--out", tmp_path / "p"]):
        code, _, err = run_cli([*command, "--ckpt", members[0], "--ckpt", renamed], capsys)
        assert code == 2, err
        assert err.strip().splitlines()[-1].startswith(f"segcli: error: {renamed}: it differs from {members[0]} in "
                                                       "classes ['c0'"), err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()


def test_a_model_given_twice_under_another_name_is_refused(trained, members, tmp_path, capsys):
    """A hard link is the same file under another path, and a copy of an export (or a second export of the same
    checkpoint) is the same model: either would weigh that model double without a word."""
    import os
    import shutil

    linked = tmp_path / "linked.ckpt"
    os.link(members[0], linked)
    val = trained["data"] / "images" / "val"
    code, _, err = run_cli(["predict", "--ckpt", members[0], "--ckpt", members[1], "--ckpt", linked, val,
                            "--out", tmp_path / "p"], capsys)
    assert code == 2 and f"{linked}: given twice (as {members[0]})" in err, err
    assert not (tmp_path / "p").exists()

    pytest.importorskip("onnxruntime")
    onnx, again = tmp_path / "f0.onnx", tmp_path / "f1.onnx"
    code, _, err = run_cli(["export", "--ckpt", members[0], "--format", "onnx", "--out", onnx], capsys)
    assert code == 0, err
    shutil.copyfile(onnx, again)
    code, _, err = run_cli(["eval", "--model", onnx, "--model", again, "--json", tmp_path / "e.json"], capsys)
    assert code == 2 and f"{again}: exported from the same checkpoint as {onnx}" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "e.json").exists()
    # a checkpoint beside its own export (either flag takes either kind of file): it weighed 2/3 in an ensemble of
    # three, changing half the pixels of an image, without a word
    for models, first, second, how in (
            ([members[0], members[1], onnx], onnx, members[0], "exported from"),
            ([onnx, members[1], members[0]], members[0], onnx, "the checkpoint that {} was exported from")):
        args = [a for m in models for a in ("--ckpt", m)]
        code, _, err = run_cli(["eval", *args, "--json", tmp_path / "e.json"], capsys)
        said = f"exported from {second}" if how == "exported from" else how.format(second)
        assert code == 2 and f"{first}: {said} (its checkpoint_sha256), so it is that model given twice" in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "e.json").exists()
    code, _, err = run_cli(["eval", "--ckpt", members[0], "--ckpt", members[1], "--json", tmp_path / "e.json"], capsys)
    assert code == 0, err  # two checkpoints, no export: nothing hashed, nothing refused


@pytest.mark.parametrize("entry", ["null", "''"])
def test_an_empty_entry_of_a_hydra_list_is_named(trained, members, tmp_path, capsys, entry):
    code, _, err = run_cli(["eval", f"ckpt=[{members[0]},{entry}]"], capsys)
    assert code == 2 and "an empty entry; give each model's path" in err, err
