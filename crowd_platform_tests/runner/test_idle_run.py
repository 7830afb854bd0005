"""A no-op `crowd-platform run` answers before Dagster is imported, and only when that is safe:
landing holds no file and the last pass ended cleanly (else recovery must run)."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from crowd_platform.common.settings import get_settings
from crowd_platform.runner import idle
from crowd_platform.runner import orchestration
from crowd_platform.runner.orchestration import RunSummary, process_pending

PROBE = ("import sys; from crowd_platform.cli import main; rc = main(['run', '--home', sys.argv[1]]); "
         "print('dagster imported:', 'dagster' in sys.modules); sys.exit(rc)")


def _home(tmp_path):
    settings = get_settings(str(tmp_path / "home"))
    settings.ensure_dirs()
    for operator in ("telkomsel", "indosat"):  # the folders operators deliver into stay behind, empty
        (settings.landing / operator).mkdir()
    return settings


def _cli_run(home) -> subprocess.CompletedProcess:
    env = {**os.environ, "CROWD_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([sys.executable, "-c", PROBE, str(home)], capture_output=True, text=True, env=env, timeout=300)


def test_noop_run_answers_without_dagster(tmp_path):
    settings = _home(tmp_path)
    done = _cli_run(settings.home)
    assert done.returncode == 0, done.stderr
    assert "nothing pending" in done.stdout and "dagster imported: False" in done.stdout


def test_a_leftover_mark_takes_the_full_path_with_recovery(tmp_path):
    settings = _home(tmp_path)
    idle.mark_path(settings).write_text("{}", encoding="utf-8")  # a pass that was killed
    done = _cli_run(settings.home)
    assert done.returncode == 0, done.stderr
    assert "dagster imported: True" in done.stdout and "done: 0 runs" in done.stdout
    assert not idle.mark_path(settings).exists(), "a clean full pass removes the mark"


@pytest.mark.parametrize("where", ["operator folder", "landing root", "nested folder"])
def test_any_file_in_landing_is_pending(tmp_path, where):
    settings = _home(tmp_path)
    assert idle.nothing_pending(settings)
    if where == "operator folder":
        (settings.landing / "telkomsel" / "half_delivered.csv").write_bytes(b"no manifest yet")
    elif where == "landing root":
        (settings.landing / "stray.csv").write_bytes(b"unroutable")
    else:
        (settings.landing / "telkomsel" / "sub").mkdir()
    assert not idle.nothing_pending(settings)


def test_mark_stays_after_a_failed_or_interrupted_pass(tmp_path, monkeypatch):
    settings = _home(tmp_path)
    with dg.instance_for_test() as instance:
        assert process_pending(settings, instance, progress=lambda _line: None).ok
        assert not idle.mark_path(settings).exists()

        monkeypatch.setattr(orchestration, "_process_pending",
                            lambda *args, **kwargs: RunSummary(runs=1, failed_runs=["window_job (run x)"]))
        assert not process_pending(settings, instance, progress=lambda _line: None).ok
        assert idle.mark_path(settings).exists() and not idle.nothing_pending(settings)

        idle.mark_path(settings).unlink()

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(orchestration, "_process_pending", interrupted)
        with pytest.raises(KeyboardInterrupt):
            process_pending(settings, instance, progress=lambda _line: None)
        assert idle.mark_path(settings).exists()
