"""A short but valid drop (manifest row count matching, every rule passing) is flagged against
its operator's own history of the same day type and time of day: accepted with a warning and
its window incomplete for alerts, or quarantined when the contract makes it blocking."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest
import yaml

from crowd_platform.common.contracts import contract_for
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import CONTRACTS_DIR, get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.density.completeness import completeness_rows
from crowd_platform.ingestion.assets import operator_drops, staged_events
from crowd_platform.ingestion.fixtures import canonical_events
from crowd_platform.simulator.drops import write_drop

MONDAY = datetime(2020, 3, 30, 3, 0, tzinfo=timezone.utc)  # 10:00 WIB
STEP = timedelta(minutes=15)


def _deliver(settings, window: datetime, rows: int, seed: int) -> None:
    contract = contract_for(settings.contracts_dir, "telkomsel", "events")
    write_drop(settings.landing, contract, canonical_events(contract, window, rows, seed=seed), window_start=window,
               window_end=window + STEP)
    with dg.instance_for_test() as instance:
        result = dg.materialize([operator_drops, staged_events], resources={"crowd": CrowdPlatform(home=str(settings.home))},
                                instance=instance, partition_key=f"{window:%Y-%m-%d-%H:%M}")
    assert result.success


def _drop(settings, window: datetime) -> dict:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        cursor = con.execute("SELECT status, reason, volume_flag, drop_id FROM drops WHERE window_start = ?", [window])
        return dict(zip(("status", "reason", "volume_flag", "drop_id"), cursor.fetchone()))


def _home(tmp_path, severity: str | None = None):
    contracts = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, contracts)
    if severity:
        path = contracts / "telkomsel_events.yaml"
        document = yaml.safe_load(path.read_text())
        for item in document["customProperties"]:
            if item["property"] == "volume_check":
                item["value"]["severity"] = severity
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    settings = get_settings(tmp_path / "home")  # CROWD_CONTRACTS (contracts_env): the copied contracts
    assert settings.contracts_dir == contracts.resolve()
    settings.ensure_dirs()
    return settings


@pytest.fixture
def contracts_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CROWD_CONTRACTS", str(tmp_path / "contracts"))


def test_short_drop_is_accepted_flagged_and_makes_its_window_incomplete(tmp_path, contracts_env):
    settings = _home(tmp_path)
    for day in range(3):  # Mon-Wed at 10:00 WIB: 300 rows, 100 subscribers each
        _deliver(settings, MONDAY + timedelta(days=day), 300, seed=day)
    thursday = MONDAY + timedelta(days=3)
    _deliver(settings, thursday, 120, seed=9)  # 40 %: valid, and its manifest says 120 rows
    drop = _drop(settings, thursday)
    assert drop["status"] == "accepted"
    assert drop["volume_flag"].startswith("volume below history: rows 40% of usual, subscribers 40% of usual")
    assert all(_drop(settings, MONDAY + timedelta(days=day))["volume_flag"] is None for day in range(3))
    with connect(settings.warehouse_path) as con:
        results = dict(con.execute("SELECT rule, passed FROM check_results WHERE drop_id = ? AND engine = 'profile'",
                                   [drop["drop_id"]]).fetchall())
        (row,) = completeness_rows(con, settings, thursday, thursday + STEP, "run")
    assert results == {"volume_rows": False, "volume_subscribers": False, "volume_cells": True}
    assert row["flagged_operators"] == ["telkomsel"] and "telkomsel" in row["missing_operators"]
    assert row["arrived_operators"] == [] and row["completeness"] == 0.0  # the other operators never delivered here


def test_a_saturday_is_not_judged_by_weekdays(tmp_path, contracts_env):
    settings = _home(tmp_path)
    for day in range(3):
        _deliver(settings, MONDAY + timedelta(days=day), 300, seed=day)
    saturday = MONDAY + timedelta(days=5)
    _deliver(settings, saturday, 120, seed=9)  # quieter, as Saturdays are: no Saturday history yet
    assert _drop(settings, saturday)["volume_flag"] is None


def test_blocking_severity_quarantines_with_a_clear_reason(tmp_path, contracts_env):
    settings = _home(tmp_path, severity="error")
    for day in range(2):
        _deliver(settings, MONDAY + timedelta(days=day), 300, seed=day)
    wednesday = MONDAY + timedelta(days=2)
    _deliver(settings, wednesday, 90, seed=9)
    drop = _drop(settings, wednesday)
    assert drop["status"] == "quarantined"
    assert drop["reason"].startswith("volume below history: rows 30% of usual")
