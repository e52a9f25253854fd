"""The test run's own disk use (tests/tmp_cleanup.py): folders of passing modules go when the module ends, a failing
module's stay for its reader, and a session fixture's folder lasts while later modules use it."""

import shutil
from pathlib import Path

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent

CONFTEST = """
import pytest
pytest_plugins = ["tmp_cleanup"]

@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")
"""

MODULE = """
import pytest

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("{name}")
    (folder / "run.bin").write_bytes(b"x" * 1000)
    return folder

def test_one(made, shared, tmp_path):
    (tmp_path / "own").write_text("x")
    assert made.is_dir() and shared.is_dir()

def test_two(made, shared):
    assert {result}
"""


def test_module_folders_are_removed_when_the_module_passes(pytester, tmp_path):
    shutil.copy(HERE / "tmp_cleanup.py", pytester.path / "tmp_cleanup.py")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a=MODULE.format(name="alpha", result="True"),
                        test_b=MODULE.format(name="beta", result="False"),
                        test_c=MODULE.format(name="gamma", result="True"))
    pytester.makeini("[pytest]\ntmp_path_retention_policy = failed\n")
    base = tmp_path / "base"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--basetemp={base}")
    result.assert_outcomes(passed=5, failed=1)
    left = sorted(p.name for p in base.iterdir())
    # alpha and gamma passed: gone; beta failed: kept; the session fixture's folder stayed for test_c
    assert "beta0" in left
    assert "alpha0" not in left and "gamma0" not in left
    assert "shared0" in left
    # tmp_path of a passing test is removed by pytest's own retention policy
    assert not any(name.startswith("test_one") for name in left)
