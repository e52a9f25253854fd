"""The wheel ships conf/, and the installed package finds its configs from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers_cli import REPO, assert_ok, describe, run_cli

import segcli


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, describe(proc)
    wheels = list(out.glob("segcli-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contains_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted((REPO / "conf").rglob("*.yaml"))
    assert configs, "no configs found in the repository"
    missing = [f"segcli/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in configs
               if f"segcli/conf/{p.relative_to(REPO / 'conf').as_posix()}" not in names]
    assert not missing, f"not in the wheel: {missing}"


def test_wheel_configs_are_byte_identical(wheel):
    with zipfile.ZipFile(wheel) as archive:
        for path in (REPO / "conf").rglob("*.yaml"):
            packed = archive.read(f"segcli/conf/{path.relative_to(REPO / 'conf').as_posix()}")
            assert packed == path.read_bytes(), path


def test_wheel_contains_the_package_and_entry_point(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "src" / "segcli"
    for path in package.rglob("*.py"):
        assert f"segcli/{path.relative_to(package).as_posix()}" in names, path
    assert wheel.name.startswith(f"segcli-{segcli.__version__}-")
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "segcli = segcli.cli:main" in text
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_unpacked_wheel_finds_its_own_configs(wheel, tmp_path):
    """Import segcli from the unpacked wheel (not the source tree) and compose a config from another cwd."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import segcli.config as c; print(c.__file__); print(c.conf_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, describe(probe)
    module_file, conf = probe.stdout.split()
    assert Path(module_file).is_relative_to(site), "segcli was not imported from the unpacked wheel"
    assert Path(conf) == site / "segcli" / "conf"

    proc = subprocess.run([sys.executable, "-m", "segcli", "train", "model=fpn", "--cfg"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, describe(proc)
    assert yaml.safe_load(proc.stdout)["model"]["arch"] == "fpn"


def test_cfg_works_from_any_directory(tmp_path):
    proc = assert_ok(run_cli("train", "--cfg", cwd=tmp_path))
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["arch"] == "unet"
    assert cfg["trainer"]["accelerator"] == "cpu"
    proc = assert_ok(run_cli("eval", "--cfg", cwd="/"))
    assert yaml.safe_load(proc.stdout)["split"] == "val"
