"""segcli in an environment its CI does not have: a dependency missing from a hand-made install, or installed but
broken (a mismatched protobuf under tensorboard, a half-removed onnxruntime). Each is one line naming the package and
the pip command for this interpreter, exit 2, where it was 'internal error' (exit 4: 'a bug, please report it')."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers_cli import describe, one_error_line
from helpers_cli import segcli_bytes as segcli


def _shadowed(tmp_path: Path, package: str, body: str) -> dict:
    """An environment in which importing `package` runs `body` instead (a folder first on PYTHONPATH): a package that
    is installed but broken."""
    folder = tmp_path / "shadow" / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(body, encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _absent(tmp_path: Path, package: str) -> dict:
    """An environment without `package`, as Python sees one: importing it is a ModuleNotFoundError and
    importlib.util.find_spec finds nothing (a sitecustomize puts None in sys.modules)."""
    folder = tmp_path / "absent"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"import sys\nsys.modules[{package!r}] = None\n", encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join([str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_a_missing_onnxruntime_is_named_with_the_command_that_installs_it(tmp_path):
    """onnxruntime left out of a hand-made install (`pip install --no-deps`, a trimmed image): `segcli eval --model
    m.onnx` and `segcli predict --model m.onnx` were 'internal error: ModuleNotFoundError: No module named
    'onnxruntime' (rerun with SEGCLI_DEBUG=1 ...)', exit 4, as if segcli had a bug; nothing was written."""
    env = _absent(tmp_path, "onnxruntime")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: onnxruntime is needed first")
    for args in (["eval", "--model", model], ["predict", "--model", model, tmp_path, "--out", tmp_path / "pred"]):
        proc = segcli(*args, cwd=tmp_path, env=env)
        line = one_error_line(proc, 2, alone=True)
        assert "'onnxruntime' is not installed" in line, line
        assert f"{sys.executable} -m pip install onnxruntime" in line, line
        assert "internal error" not in line and proc.stdout == b""
    assert not (tmp_path / "pred").exists()


def test_a_package_that_is_installed_but_broken_names_the_reinstall(tmp_path):
    """A dependency whose own import fails (tensorboard or onnxruntime built against another protobuf: 'cannot import
    name ... from google.protobuf.internal'): exit 4 'internal error: ImportError'. The line names the package whose
    import failed, the reason, and a forced reinstall."""
    env = _shadowed(tmp_path, "onnxruntime", "from json import builder_of_another_version  # noqa: F401\n")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    proc = segcli("eval", "--model", model, cwd=tmp_path, env=env)
    line = one_error_line(proc, 2, alone=True)
    assert "'onnxruntime' is installed but cannot be imported" in line, line
    assert "builder_of_another_version" in line and "-m pip install --force-reinstall onnxruntime" in line, line


def test_a_missing_package_that_prepare_needs_for_tiffs(tmp_path):
    """tifffile missing, a folder of TIFF images: `prepare folder` was exit 4 (internal error) before it wrote
    anything; now the same one line as any missing dependency."""
    import numpy as np
    from PIL import Image

    for kind in ("images", "masks"):
        (tmp_path / kind).mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / "images" / f"t{i}.tif")
        Image.fromarray(np.full((16, 16), i % 2, np.uint8)).save(tmp_path / "masks" / f"t{i}.png")
    env = _absent(tmp_path, "tifffile")
    proc = segcli("prepare", "folder", "--images", tmp_path / "images", "--masks", tmp_path / "masks", "--out",
                  tmp_path / "data", "--classes", "a,b", cwd=tmp_path, env=env)
    line = one_error_line(proc, 2)
    assert "'tifffile' is not installed" in line and "pip install tifffile" in line, describe(proc)
    assert not (tmp_path / "data").exists()


def _prepare_lzw_tiffs(tmp_path: Path, env: dict):
    """`segcli prepare folder` of three LZW-compressed 5-band TIFFs (which tifffile decodes through imagecodecs only)
    and their masks, run in `env`."""
    import numpy as np
    import tifffile
    from PIL import Image

    for kind in ("in", "masks"):
        (tmp_path / kind).mkdir()
    for i in range(3):
        tifffile.imwrite(tmp_path / "in" / f"ms{i}.tif", np.zeros((8, 8, 5), np.uint8), compression="lzw",
                         photometric="minisblack", planarconfig="contig")
        Image.fromarray(np.full((8, 8), i % 2, np.uint8)).save(tmp_path / "masks" / f"ms{i}.png")
    return segcli("prepare", "folder", "--images", tmp_path / "in", "--masks", tmp_path / "masks", "--out",
                  tmp_path / "data", "--classes", "a,b", cwd=tmp_path, env=env)


def test_a_compressed_tiff_without_imagecodecs_names_the_package_not_the_file(tmp_path):
    """An LZW-compressed 5-band TIFF without imagecodecs (tifffile's codecs): '... not a readable image (corrupt,
    truncated or unsupported format); replace or remove it', exit 3, which blamed a sound file."""
    pytest.importorskip("imagecodecs")
    proc = _prepare_lzw_tiffs(tmp_path, _absent(tmp_path, "imagecodecs"))
    line = one_error_line(proc, 2)
    assert "'imagecodecs' is not installed" in line and "lzw-compressed TIFFs" in line, describe(proc)
    assert "not a readable image" not in proc.stderr.decode()
    assert not (tmp_path / "data").exists()


def test_a_broken_imagecodecs_is_told_to_reinstall_not_install(tmp_path):
    """imagecodecs installed but failing to import (or built without a codec): the line said 'not installed; pip
    install imagecodecs', which pip answers 'Requirement already satisfied'."""
    pytest.importorskip("imagecodecs")
    proc = _prepare_lzw_tiffs(tmp_path, _shadowed(tmp_path, "imagecodecs",
                                                  "raise ImportError('undefined symbol: lzw_decode')\n"))
    line = one_error_line(proc, 2)
    assert "'imagecodecs' is installed but cannot be imported" in line, describe(proc)
    assert "lzw-compressed TIFFs" in line and "--force-reinstall imagecodecs" in line, line


@pytest.mark.parametrize("opset", ["16", "17"])
def test_an_onnx_export_without_the_onnx_package_names_it(opset, synthetic_run, tmp_path):
    """onnx (or onnxscript) left out of an install: `segcli export` blamed the model ('cannot export unet/resnet18
    to ONNX opset 16: No module named 'onnx'; try --opset 17 or --format torchscript'; at opset 17 after a retry with
    torch.export). The package's one line, exit 2, nothing written."""
    out = tmp_path / "m.onnx"
    proc = segcli("export", "--ckpt", synthetic_run.run_dir / "checkpoints" / "best.ckpt", "--out", out,
                  "--opset", opset, cwd=tmp_path, env=_absent(tmp_path, "onnx"))
    line = one_error_line(proc, 2)
    assert "'onnx' is not installed" in line and "pip install onnx" in line and "cannot export" not in line, line
    assert "torch.export" not in proc.stderr.decode()
    assert list(tmp_path.glob("*.onnx*")) == [] and list(tmp_path.glob(".*onnx*")) == []


def test_every_command_without_typer_is_one_line(tmp_path):
    """typer missing: `segcli --help`, `--version` and every command ended in a traceback, exit 1."""
    for args in (["--help"], ["--version"], ["eval", "--ckpt", "x.ckpt"]):
        proc = segcli(*args, cwd=tmp_path, env=_absent(tmp_path, "typer"))
        line = one_error_line(proc, 2, alone=True)
        assert "'typer' is not installed" in line and "pip install typer" in line, line
