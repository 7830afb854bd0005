"""Shared fixtures. The end-to-end pipeline runs once per test worker that needs it.

Tests that use `pipeline_home` are in xdist group "pipeline" so that one worker runs the small
simulated week once and every such test reads the same real outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from crowd_platform_tests.support.pipeline import (  # noqa: F401 (re-exported for fixtures below)
    E2E_DAYS, E2E_FAULTS, E2E_GATHERING, E2E_HOURS, E2E_START, E2E_SUBSCRIBERS, SAMPLED_RULES, sample_raw_msisdns, utc,
    window_range,
)


@dataclass
class PipelineRun:
    home: Path
    dagster_home: Path
    summary: object
    simulated: dict
    quarantined_drop: str | None
    quarantined_window: str | None  # its partition key
    raw_msisdns: tuple[str, ...] = ()  # read from landing before processing: the platform deletes them at once


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
    raw_msisdns = sample_raw_msisdns(settings.landing, simulated["faults"])
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
                      quarantined_drop=row[0], quarantined_window=row[1], raw_msisdns=raw_msisdns)
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
