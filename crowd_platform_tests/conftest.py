"""Shared fixtures. The end-to-end pipeline runs once per test worker that needs it.

Tests that use `pipeline_home` are in xdist group "pipeline" so that one worker runs the small
simulated week once and every such test reads the same real outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

# Gathering injected on the last simulated day (Friday 27 March 2020, Friday prayer at
# Masjid Istiqlal, Kelurahan Pasar Baru, Kecamatan Sawah Besar): 11:30-13:30 WIB = 04:30-06:30 UTC.
E2E_START = date(2020, 3, 23)
E2E_DAYS = 5
E2E_SUBSCRIBERS = 4000
E2E_HOURS = (3, 8)  # UTC hours simulated each day (10:00-15:00 WIB): keeps the suite fast
E2E_GATHERING = {
    "id": "istiqlal-friday-prayer",
    "site": "Masjid Istiqlal",
    "kind": "friday prayer",
    "lon": 106.8313,
    "lat": -6.1702,
    "start": "2020-03-27T04:30:00Z",
    "end": "2020-03-27T06:30:00Z",
    "extra_subscribers": 700,
}
# A few thousand simulated subscribers stand for 11 million people: absolute excess
# thresholds are those of the sampled rules file (same statistics, smaller minimum excess).
SAMPLED_RULES = "config/alert_rules_sampled.yaml"
E2E_FAULTS = ("late", "duplicate", "redrop", "msisdn")


@dataclass
class PipelineRun:
    home: Path
    dagster_home: Path
    summary: object
    simulated: dict
    quarantined_drop: str | None
    quarantined_window: str | None  # its partition key


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """Simulate a small Jakarta week and process it through the real Dagster definitions."""
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import process_pending
    from crowd_platform.common.settings import get_settings
    from crowd_platform.simulator import simulate

    home = tmp_path_factory.mktemp("crowd_home")
    dagster_home = home / "dagster_home"
    previous = {key: os.environ.get(key) for key in ("CROWD_HOME", "DAGSTER_HOME", "CROWD_ALERT_RULES")}
    os.environ["CROWD_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    os.environ["CROWD_ALERT_RULES"] = SAMPLED_RULES
    settings = get_settings(home)
    settings.ensure_dirs()
    simulated = simulate(
        home,
        start=E2E_START,
        days=E2E_DAYS,
        subscribers=E2E_SUBSCRIBERS,
        seed=7,
        hours=E2E_HOURS,
        gatherings=[E2E_GATHERING],
        # Operators' real faults, mixed into the normal week: the platform must take them in stride.
        faults=frozenset(E2E_FAULTS),
    )
    instance = get_instance(settings)
    summary = process_pending(settings, instance, purpose="test-e2e", actor="pytest", progress=lambda _: None)
    import duckdb

    connection = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        row = connection.execute(
            "SELECT drop_id, strftime(window_start AT TIME ZONE 'UTC', '%Y-%m-%d-%H:%M') FROM drops "
            "WHERE status = 'quarantined' ORDER BY drop_id LIMIT 1"
        ).fetchone() or (None, None)
    finally:
        connection.close()
    yield PipelineRun(home=home, dagster_home=dagster_home, summary=summary, simulated=simulated,
                      quarantined_drop=row[0], quarantined_window=row[1])
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def window_range(start: str, end: str) -> list[datetime]:
    current, stop, windows = utc(start), utc(end), []
    while current < stop:
        windows.append(current)
        current += timedelta(minutes=15)
    return windows
