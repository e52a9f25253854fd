"""Failure modes a user meets: one line on stderr, the documented exit code, no traceback (unless SEGCLI_DEBUG=1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_cli import assert_error, assert_error_after_report, assert_ok, describe, run_cli

from segcli.errors import EXIT_CHECK_FAILED, EXIT_DATA, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, first_line


def test_documented_exit_codes():
    assert (EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_DATA, EXIT_INTERRUPTED, EXIT_TERMINATED) == (0, 1, 2, 3, 130, 143)


def test_first_line_of_a_library_error_for_a_one_line_message():
    """What the one-line errors quote of a library's exception: its first line, cut short; an exception without a
    message (which `str(err).splitlines()[0]` turned into an IndexError, exit 4) gives its type's name."""
    assert first_line(RuntimeError("size mismatch for a.weight\n\tcopying a param ...")) == "size mismatch for a.weight"
    assert first_line(RuntimeError("\n  spaced out  \nmore")) == "spaced out"
    assert first_line(RuntimeError()) == "RuntimeError"
    assert first_line(ValueError("x" * 500), 160) == "x" * 160


# ----------------------------------------------------------------------------- checkpoints
def test_missing_checkpoint(tmp_path):
    missing = tmp_path / "nope" / "best.ckpt"
    line = assert_error(run_cli("eval", "--ckpt", missing, cwd=tmp_path), 3)
    assert str(missing) in line


def test_truncated_checkpoint(synthetic_run, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(synthetic_run.best.read_bytes()[:1000])
    line = assert_error(run_cli("eval", "--ckpt", truncated, cwd=tmp_path), 3)
    assert str(truncated) in line


def test_text_file_as_checkpoint(tmp_path):
    fake = tmp_path / "x.ckpt"
    fake.write_text("this is not a checkpoint\n")
    line = assert_error(run_cli("eval", "--ckpt", fake, cwd=tmp_path), 3)
    assert str(fake) in line


def test_truncated_checkpoint_for_predict_and_export(synthetic_run, tmp_path):
    truncated = tmp_path / "t.ckpt"
    truncated.write_bytes(synthetic_run.best.read_bytes()[:1000])
    image = synthetic_run.data / synthetic_run.card["splits"]["val"][0]["image"]
    assert_error(run_cli("predict", image, "--ckpt", truncated, "--out", tmp_path / "p", cwd=tmp_path), 3)
    assert not (tmp_path / "p").exists()
    assert_error(run_cli("export", "--ckpt", truncated, "--format", "onnx", "--out", tmp_path / "m.onnx",
                         cwd=tmp_path), 3)
    assert not (tmp_path / "m.onnx").exists()


def test_eval_without_ckpt_is_a_usage_error(tmp_path):
    assert_error(run_cli("eval", cwd=tmp_path), 2)


# ----------------------------------------------------------------------------- datasets
@pytest.fixture(scope="module")
def other_classes_dataset(tmp_path_factory) -> Path:
    """A tiny folder dataset with classes cat, dog: not what the synthetic model was trained on."""
    import cv2

    root = tmp_path_factory.mktemp("other_classes")
    rng = np.random.default_rng(0)
    for i in range(3):
        for kind, array in (("images", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
                            ("masks", rng.integers(0, 2, (64, 64), dtype=np.uint8))):
            (root / kind).mkdir(exist_ok=True)
            cv2.imwrite(str(root / kind / f"img{i}.png"), array)
    out = root / "ds"
    assert_ok(run_cli("prepare", "folder", "--images", root / "images", "--masks", root / "masks", "--out", out,
                      "--classes", "cat,dog", "--val-fraction", "0.34", cwd=root))
    return out


def test_eval_on_dataset_with_other_classes(synthetic_run, other_classes_dataset, tmp_path):
    line = assert_error(run_cli("eval", "--ckpt", synthetic_run.best, "--data", other_classes_dataset, cwd=tmp_path), 2)
    assert "classes" in line


def test_eval_unknown_split(synthetic_run, tmp_path):
    line = assert_error(run_cli("eval", "--ckpt", synthetic_run.best, "--split", "tset", cwd=tmp_path), 2)
    assert "tset" in line and "val" in line


def test_train_missing_dataset_hints_prepare(tmp_path):
    line = assert_error(run_cli("train", "data.root=/nonexistent", cwd=tmp_path), 3)
    assert "/nonexistent" in line
    assert "segcli prepare" in line
    assert not (tmp_path / "runs").exists()


def test_hand_written_card_names_its_missing_keys(tmp_path):
    """A dataset.yaml written by hand without palette and ignore_index: the error named only a KeyError
    ("invalid dataset card (KeyError: 'palette')"); it lists what a card needs and what this one lacks."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "dataset.yaml").write_text("classes: [a, b]\nsplits: {train: []}\n")
    line = assert_error(run_cli("train", f"data.root={tmp_path / 'mine'}", cwd=tmp_path), 3)
    assert "has no palette, ignore_index" in line and "segcli prepare folder" in line
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- predict inputs
def test_predict_missing_input(synthetic_run, tmp_path):
    missing = tmp_path / "no_such_image.png"
    line = assert_error(run_cli("predict", missing, "--ckpt", synthetic_run.best, "--out", tmp_path / "out",
                                cwd=tmp_path), 3)
    assert str(missing) in line


def test_predict_corrupt_image(synthetic_run, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    line = assert_error_after_report(run_cli("predict", corrupt, "--ckpt", synthetic_run.best, "--out", tmp_path / "out",
                                             cwd=tmp_path), 3)
    assert str(corrupt) in line and line.endswith("nothing was predicted")
    assert not list(tmp_path.glob("out/**/*.png"))  # no mask for an image that could not be read


def test_predict_empty_folder(synthetic_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = assert_error(run_cli("predict", empty, "--ckpt", synthetic_run.best, "--out", tmp_path / "out",
                                cwd=tmp_path), 3)
    assert str(empty) in line


# ----------------------------------------------------------------------------- model config
def test_unknown_architecture_suggests(synthetic_data, tmp_path):
    line = assert_error(run_cli("train", f"data.root={synthetic_data}", "model.arch=unett", cwd=tmp_path), 2)
    assert "did you mean unet" in line
    assert "unett" in line
    assert not (tmp_path / "runs").exists()  # nothing is created for a config error


def test_debug_shows_traceback(synthetic_data, tmp_path):
    proc = run_cli("train", f"data.root={synthetic_data}", "model.arch=unett", cwd=tmp_path,
                   env={"SEGCLI_DEBUG": "1"})
    assert proc.returncode == 2, describe(proc)  # the documented code still (a bare re-raise made every error 1)
    assert "Traceback" in proc.stderr
    assert "ConfigError" in proc.stderr and "unett" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("segcli: error: ")


def test_debug_traceback_for_data_errors(tmp_path):
    proc = run_cli("eval", "--ckpt", tmp_path / "missing.ckpt", cwd=tmp_path, env={"SEGCLI_DEBUG": "1"})
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr and "DataError" in proc.stderr


def test_debug_zero_means_off(tmp_path):
    proc = run_cli("eval", "--ckpt", tmp_path / "missing.ckpt", cwd=tmp_path, env={"SEGCLI_DEBUG": "0"})
    assert_error(proc, 3)


def test_export_unknown_format(synthetic_run, tmp_path):
    line = assert_error(run_cli("export", "--ckpt", synthetic_run.best, "--format", "tflite", cwd=tmp_path), 2)
    assert "tflite" in line and "onnx" in line


# ----------------------------------------------------------------------------- Ctrl-C, SIGTERM
@pytest.mark.parametrize("name, code, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_interrupted_prepare_exits_130_and_leaves_nothing(tmp_path, name, code, word):
    """Ctrl-C (or SIGTERM) in the middle of writing a dataset: exit 130 (143), and neither --out nor its staging
    dir remains."""
    import os
    import signal
    import subprocess
    import sys
    import time

    parent = tmp_path / "outs"
    out = parent / "ds"
    proc = subprocess.Popen([sys.executable, "-m", "segcli", "prepare", "synthetic", "--num-images", "100000",
                             "--out", str(out)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (parent.exists() and list(parent.glob(".ds.partial-*/masks/train/*.png"))):
            assert proc.poll() is None and time.monotonic() < deadline, "prepare never started writing"
            time.sleep(0.05)
        proc.send_signal(getattr(signal, name))
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("segcli:") and word in stderr.strip().splitlines()[-1]
    assert stdout == ""
    assert not out.exists()
    assert list(parent.iterdir()) == []


# ----------------------------------------------------------------------------- out of memory
@pytest.mark.parametrize("command, message, hint", [
    ("predict", "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
                "to allocate 12960000000000 bytes. Error code 12 (Cannot allocate memory)", "inference=slide"),
    ("train", "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB", "data.batch_size"),
])
def test_out_of_memory_is_one_line_naming_what_to_lower(command, message, hint, monkeypatch, capsys):
    """A failed allocation (torch's CPU allocator, CUDA) is a one-line usage error (exit 2) that says how much was
    asked for and what setting to lower, not an internal error with the allocator's source location."""
    import importlib

    from segcli.cli import main

    module = importlib.import_module(f"segcli.commands.{command}")

    def allocate(cfg):
        raise RuntimeError(message)

    monkeypatch.setattr(module, "run", allocate)
    monkeypatch.delenv("SEGCLI_DEBUG", raising=False)
    args = {"predict": ["predict", "x.png", "--ckpt", "m.ckpt", "--out", "o"], "train": ["train", "data.root=d"]}
    with pytest.raises(SystemExit) as exc:
        main(args[command])
    err = capsys.readouterr().err
    assert exc.value.code == EXIT_USAGE and len(err.strip().splitlines()) == 1, err
    assert "out of memory" in err and hint in err and "alloc_cpu" not in err and "internal error" not in err
    assert ("11.8 TiB" if command == "predict" else "2.00 GiB") in err


# ----------------------------------------------------------------------------- a dependency missing or broken
def test_an_import_error_among_segcli_own_modules_stays_a_bug():
    """Only other packages are the environment's fault: an ImportError inside segcli is still exit 4 (report it)."""
    from segcli.errors import import_failed

    for code in ("from segcli import no_such_module", "import segcli.no_such_module"):
        try:
            exec(code)
        except ImportError as err:
            assert import_failed(err) == "", code
    assert import_failed(RuntimeError("No module named 'x'")) == ""
    try:
        import no_such_package_anywhere  # noqa: F401
    except ImportError as err:
        assert "'no-such-package-anywhere' is not installed" in import_failed(err)


def test_the_package_a_failed_import_names(tmp_path, monkeypatch):
    """The package named is the one whose own import failed, through importlib.import_module too (it named
    'importlib'); an ImportError a library raises at run time ('please install X') keeps the library's words instead
    of a reinstall of the library; a worker's re-raised ModuleNotFoundError (its `name` lost) is read from its text."""
    import importlib
    import sys

    from segcli.errors import import_failed

    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("from json import builder_of_another_version  # noqa\n")
    (tmp_path / "helperpkg.py").write_text("def run():\n    raise ImportError('Please install ONNX.')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError) as raised:
        importlib.import_module("brokenpkg")
    line = import_failed(raised.value)
    assert line.startswith("the Python package 'brokenpkg' is installed but cannot be imported (cannot import name "
                           "'builder_of_another_version' from 'json'"), line
    assert line.endswith(f"{sys.executable} -m pip install --force-reinstall brokenpkg"), line
    import helperpkg

    with pytest.raises(ImportError) as raised:
        helperpkg.run()
    line = import_failed(raised.value)
    assert "(Please install ONNX.)" in line and "helperpkg" not in line and "--force-reinstall" not in line, line
    worker = ModuleNotFoundError("Caught ModuleNotFoundError in DataLoader worker process 0.\nOriginal Traceback "
                                 "(most recent call last):\nModuleNotFoundError: No module named 'no_such_codecs'")
    line = import_failed(worker)
    assert "'no-such-codecs' is not installed" in line and "(No module named 'no_such_codecs')" in line, line


def test_a_broken_package_is_named_by_its_installed_distribution():
    """A module's pip name is the distribution installed: cv2 is opencv-python-headless here, google (protobuf's
    top-level module, which a mismatched tensorboard fails inside) is protobuf, not the PyPI package 'google'."""
    from segcli.errors import _distribution

    assert _distribution("cv2") == "opencv-python-headless"
    pytest.importorskip("google.protobuf")
    assert _distribution("google") == "protobuf"
