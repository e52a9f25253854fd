"""train's data.root and eval's --data naming a folder that is not a prepared dataset (no dataset.yaml): the fix was
`segcli prepare synthetic --out <that folder>` whatever it held, a command prepare refuses for a non-empty folder and
not what the user wants; `prepare lint` of the same folder named the right prepare command."""

from __future__ import annotations

import shlex

from helpers_data import random_image, write_grey, write_image


def _images_and_masks(root, rng):
    for kind in ("images", "masks"):
        (root / kind).mkdir(parents=True)
    for i in range(2):
        write_image(root / "images" / f"a{i}.png", random_image(rng, 16, 16))
        write_grey(root / "masks" / f"a{i}.png", rng.integers(0, 2, (16, 16)).astype("uint8"))
    return root


def _fix(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("segcli: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_train_on_an_images_and_masks_folder_names_prepare_folder(tmp_path, rng, run_cli):
    raw = _images_and_masks(tmp_path / "raw", rng)
    code, _, err = run_cli("train", f"data.root={raw}", "experiment=smoke", "--run-dir", tmp_path / "run")
    line = _fix(err)
    assert code == 3
    assert (f"{raw / 'dataset.yaml'}: no dataset card; it holds images/ and masks/: run `segcli prepare folder "
            f"--images {shlex.quote(str(raw / 'images'))} --masks {shlex.quote(str(raw / 'masks'))} --out DIR`") in line
    assert "synthetic" not in line and not (tmp_path / "run").exists()


def test_train_on_a_download_names_its_prepare_command(cityscapes_src, tmp_path, run_cli):
    src = cityscapes_src[0]
    code, _, err = run_cli("train", f"data.root={src}", "experiment=smoke", "--run-dir", tmp_path / "run")
    assert code == 3 and f"`segcli prepare cityscapes --src {src} --out DIR`" in _fix(err)


def test_eval_data_on_an_images_and_masks_folder_names_prepare_folder(tmp_path, rng, run_cli):
    raw = _images_and_masks(tmp_path / "raw", rng)
    predictions = tmp_path / "pred"
    predictions.mkdir()
    code, _, err = run_cli("eval", "--predictions", predictions, "--data", raw)
    assert code == 3 and "it holds images/ and masks/: run `segcli prepare folder" in _fix(err)


def test_other_folders_get_a_fix_that_fits_them(tmp_path, run_cli):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    code, _, err = run_cli("train", f"data.root={other}", "experiment=smoke", "--run-dir", tmp_path / "run")
    assert code == 3 and "it is not a prepared dataset: prepare it into a new folder first" in _fix(err)
    assert _fix(err).endswith("see `segcli prepare --help`)")  # data/README.md is not installed with the package
    code, _, err = run_cli("train", f"data.root={tmp_path / 'absent'}", "experiment=smoke")
    assert code == 3 and "give the folder `segcli prepare` wrote (it holds dataset.yaml)" in _fix(err)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli("train", f"data.root={empty}", "experiment=smoke")
    assert code == 3 and f"`segcli prepare synthetic --out {empty}`" in _fix(err)  # an empty folder: it can


def test_a_folder_that_cannot_be_read_is_named_not_a_traceback(tmp_path, monkeypatch, run_cli):
    """Looking inside data.root for a layout to name must not turn a missing card into an internal error where the
    user may not list the folder (root reads every folder, so the refusal is simulated)."""
    from pathlib import Path

    locked = tmp_path / "locked"
    locked.mkdir()

    def refused(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refused)
    code, _, err = run_cli("train", f"data.root={locked}", "experiment=smoke")
    assert code == 3 and "cannot look inside it (Permission denied)" in _fix(err)
