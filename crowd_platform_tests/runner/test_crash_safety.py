"""kill -9 at the worst moments, then rerun: outputs equal an undisturbed run's, no drop is
lost, no broadcast request is sent twice, the audit chain still verifies.

Days 1-3 (the baseline) are processed once; each case copies that state, lets day 4 (with a
gathering, so alerts and broadcasts happen) land, runs `crowd-platform run` in a subprocess
that SIGKILLs itself at a crash point (common/crashpoints.py), then runs it again normally.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from crowd_platform.common.crashpoints import POINTS

START = date(2020, 3, 16)  # Mon-Thu, no holiday: Thursday has a 3-day bootstrap baseline
DAYS = 4
HOURS = (4, 6)
OPERATORS = ["telkomsel", "xl"]
GATHERING = {"id": "istiqlal", "lon": 106.8313, "lat": -6.1702, "start": "2020-03-19T04:30:00Z",
             "end": "2020-03-19T05:30:00Z", "extra_subscribers": 500}
LAST_DAY_STAMP = "20200319T"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Minutes, not seconds: outside the default suite (`make test`), run by `make test-resilience`
# and by CI on every submission.
pytestmark = pytest.mark.slow

COMPARED = {
    "drops": "SELECT drop_id, status, lake_path IS NOT NULL FROM drops ORDER BY ALL",
    "bts_presence": "SELECT window_start, operator, place_level, place_id, subscribers FROM bts_presence ORDER BY ALL",
    "district_density": "SELECT window_start, level, district_code, round(people_estimate, 6) FROM district_density ORDER BY ALL",
    "crowd_alerts": "SELECT alert_id, state, severity, opened_window, last_window, closed_window FROM crowd_alerts ORDER BY ALL",
    "alert_transitions": "SELECT alert_id, window_start, transition FROM alert_transitions ORDER BY ALL",
    "broadcast_requests": "SELECT request_id, operator, cell_ids FROM broadcast_requests ORDER BY ALL",
}


def _contracts(home: Path) -> Path:
    """A platform for the simulated operators only: the contracts of the others would make every
    window incomplete (64 % of the market reporting, below alerts.min_market_share) and nothing
    would ever be evaluated."""
    from crowd_platform.common.settings import CONTRACTS_DIR

    contracts = home.parent / "contracts"
    if not contracts.exists():
        contracts.mkdir(parents=True)
        for path in CONTRACTS_DIR.glob("*.yaml"):
            if not path.name.endswith("_events.yaml") or path.name.split("_")[0] in OPERATORS:
                shutil.copy(path, contracts / path.name)
    return contracts


def _env(home: Path, crash_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, "CROWD_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"),
           "CROWD_ALERT_RULES": "config/alert_rules_sampled.yaml", "CROWD_CONTRACTS": str(_contracts(home))}
    env.pop("CROWD_CRASH_AT", None)
    if crash_at:
        env["CROWD_CRASH_AT"] = crash_at
    return env


def _cli(home: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crowd_platform", *args, "--home", str(home)], cwd=PROJECT_ROOT,
                          env=_env(home, crash_at), capture_output=True, text=True, timeout=900)


def _snapshot(home: Path) -> dict[str, list]:
    connection = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        state = {name: connection.execute(sql).fetchall() for name, sql in COMPARED.items()}
    finally:
        connection.close()
    state["outbox"] = sorted(path.name for path in (home / "outbox").rglob("*.json"))
    state["landing_left"] = sorted(str(path) for path in (home / "landing").rglob("*") if path.is_file())
    state["staging_left"] = sorted(str(path) for path in (home / "staging").rglob("*") if path.is_file())
    return state


@pytest.fixture(scope="module")
def baseline_state(tmp_path_factory):
    """Days 1-3 processed; day 4's drops waiting in a stash; plus a reference run of day 4."""
    from crowd_platform.common.settings import get_settings
    from crowd_platform.simulator import simulate

    root = tmp_path_factory.mktemp("crash")
    base = root / "base"
    get_settings(base).ensure_dirs()
    simulate(base, start=START, days=DAYS, subscribers=1500, seed=3, hours=HOURS, gatherings=[GATHERING], operators=OPERATORS)
    stash = root / "day4"
    for path in sorted((base / "landing").rglob("*")):
        if path.is_file() and LAST_DAY_STAMP in path.name:
            target = stash / path.relative_to(base / "landing")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
    first = _cli(base, "run")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]

    reference = root / "reference"
    shutil.copytree(base, reference)
    shutil.copytree(stash, reference / "landing", dirs_exist_ok=True)
    done = _cli(reference, "run")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    state = _snapshot(reference)
    assert state["crowd_alerts"], "the day-4 gathering raised no alert: alert and broadcast crash points would prove nothing"
    assert state["broadcast_requests"]
    return base, stash, reference, state


@pytest.mark.parametrize("point", [point for point in POINTS if point != "retention_deleting"])
def test_crash_then_rerun_equals_undisturbed(point, baseline_state, tmp_path):
    base, stash, _, expected = baseline_state
    home = tmp_path / "home"
    shutil.copytree(base, home)
    shutil.copytree(stash, home / "landing", dirs_exist_ok=True)

    crashed = _cli(home, "run", crash_at=point)
    assert crashed.returncode == -9, f"crash point {point} was never reached (exit {crashed.returncode})"
    again = _cli(home, "run")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]

    state = _snapshot(home)
    for name in expected:
        assert state[name] == expected[name], f"{name} differs from the undisturbed run after a crash at {point}"
    verified = _cli(home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_crash_during_retention_then_rerun_certifies_everything(baseline_state, tmp_path):
    _, _, reference, _ = baseline_state
    undisturbed, crashed_home = tmp_path / "undisturbed", tmp_path / "crashed"
    shutil.copytree(reference, undisturbed)
    shutil.copytree(reference, crashed_home)
    as_of = "2020-03-21T00:00:00+00:00"

    assert _cli(undisturbed, "retention", "--as-of", as_of).returncode == 0
    crashed = _cli(crashed_home, "retention", "--as-of", as_of, crash_at="retention_deleting")
    assert crashed.returncode == -9, "retention never reached its crash point"
    again = _cli(crashed_home, "retention", "--as-of", as_of)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]

    certified_sql = "SELECT object_kind, object_id FROM deletion_certificates ORDER BY ALL"

    def certified(home: Path) -> list:
        connection = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
        try:
            return connection.execute(certified_sql).fetchall()
        finally:
            connection.close()

    assert certified(crashed_home) == certified(undisturbed)
    # Personal data gone: no events lake file, and raw/ keeps only cell lists (not personal).
    connection = duckdb.connect(str(crashed_home / "warehouse.duckdb"), read_only=True)
    try:
        cell_list_shas = {row[0] for row in connection.execute("SELECT sha256 FROM drops WHERE feed = 'cells'").fetchall()}
    finally:
        connection.close()
    left_in_raw = {path.name.split(".")[0] for path in (crashed_home / "raw").iterdir()}
    assert left_in_raw <= cell_list_shas, "raw copies of event drops survived retention"
    assert not list((crashed_home / "lake" / "events").rglob("*.parquet"))
    verified = _cli(crashed_home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
