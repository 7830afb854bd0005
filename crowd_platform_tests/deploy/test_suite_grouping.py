"""The default suite relies on `--dist loadgroup` to build each expensive fixture (the pipeline
week, the FlowKit onboarding, the object-storage run) once, on one worker. pytest 9.2 silently
broke that with pytest-xdist 3.8 (pytest-xdist#1386: groups split, every fixture built on both
workers, minutes lost). This runs a toy suite the way `make test` runs ours and counts the builds."""

from __future__ import annotations

import os
import subprocess
import sys

CONFTEST = '''
import os, pytest

@pytest.fixture(scope="session")
def expensive():
    with open(os.environ["BUILDS_FILE"], "a") as builds:
        builds.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")
    return 1
'''


def test_an_xdist_group_runs_on_one_worker_and_builds_its_fixture_once(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for module in ("a", "b"):
        tests = "\n".join(f"def test_{module}{n}(expensive): assert expensive" for n in range(6))
        (tmp_path / f"test_{module}.py").write_text(f"import pytest\npytestmark = pytest.mark.xdist_group('g')\n{tests}\n")
    for module in ("c", "d"):
        tests = "\n".join(f"def test_{module}{n}(): pass" for n in range(20))
        (tmp_path / f"test_{module}.py").write_text(tests + "\n")
    builds = tmp_path / "builds.txt"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "BUILDS_FILE": str(builds)}, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    assert builds.read_text().split() in (["gw0"], ["gw1"]), builds.read_text()
