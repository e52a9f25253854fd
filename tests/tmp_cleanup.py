"""Keeps the test run's disk use small: a training run leaves ~220 MB of checkpoints, and the suite makes a few
hundred of them, more than a CI machine's free disk may hold (one run stopped at 94% on "unexpected pos" from
torch.save, its disk full).

pytest's `tmp_path_retention_policy = "failed"` (pyproject.toml) removes a passing test's `tmp_path` when the test
ends. This plugin does the same for the folders that module- and class-scoped fixtures make with
`tmp_path_factory.mktemp`, once their module's last test is torn down. Folders of a module with a failed test are
kept, as pytest keeps a failed test's `tmp_path`; session- and package-scoped fixtures' folders stay until the
session ends (pytest removes them then when every test passed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

_SCOPES_CLEANED = ("module", "class")

_scopes: list[str] = []  # the scopes of the fixtures being set up, innermost last
_module: list[str] = [""]  # the module (file node id) whose test is being set up
_made: dict[str, list[Path]] = {}  # module -> folders its module/class-scoped fixtures made
_failed: set[str] = set()  # modules with a failed setup, test or teardown


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_sessionstart(session: pytest.Session) -> None:
    factory = session.config._tmp_path_factory  # pytest's own TempPathFactory (what tmp_path_factory returns)
    original = factory.mktemp

    def mktemp(basename: str, numbered: bool = True) -> Path:
        path = original(basename, numbered)
        if _scopes and _scopes[-1] in _SCOPES_CLEANED:
            _made.setdefault(_module[0], []).append(path)
        return path

    factory.mktemp = mktemp


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    _scopes.append(fixturedef.scope)
    yield
    _scopes.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    _module[0] = _module_of(item.nodeid)
    yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _failed.add(_module_of(report.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    yield  # pytest tears down the module's fixtures here when nextitem is in another module
    module = _module_of(item.nodeid)
    if nextitem is not None and _module_of(nextitem.nodeid) == module:
        return
    folders = _made.pop(module, [])
    if module not in _failed:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
