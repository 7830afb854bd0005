"""Window completeness from the real operator contracts: expected (active then), arrived, share.

The market shares are the contracts' (telkomsel 0.47, indosat 0.21, xl 0.17, tri 0.10,
smartfren 0.05); latency 30 minutes."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from crowd_platform.common.contracts import operator_contracts
from crowd_platform.common.settings import CONTRACTS_DIR, get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.density.completeness import completeness_rows, record_completeness

WINDOW = datetime(2020, 4, 6, 3, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=15)


def _accept(con, operator: str, window: datetime, status: str = "accepted") -> None:
    con.execute("INSERT INTO drops (drop_id, operator, feed, window_start, status, lake_path) "
                "VALUES (?, ?, 'events', ?, ?, 'lake/x.parquet')", [f"{operator}-{window:%H%M}-{status}", operator, window, status])


@pytest.fixture()
def settings(tmp_path):
    settings = get_settings(tmp_path / "home")
    settings.ensure_dirs()
    return settings


def test_shares_missing_operators_and_deadline(settings):
    with connect(settings.warehouse_path) as con:
        _accept(con, "smartfren", WINDOW)                     # 5 % alone: the false alerts
        _accept(con, "telkomsel", WINDOW, status="quarantined")  # a quarantined drop did not arrive
        for operator in ("telkomsel", "indosat", "xl", "tri", "smartfren"):
            _accept(con, operator, WINDOW + STEP)
        rows = completeness_rows(con, settings, WINDOW, WINDOW + 3 * STEP, "run")
    first, second, empty = rows
    assert first["arrived_operators"] == ["smartfren"] and not first["complete"]
    assert first["completeness"] == pytest.approx(0.05)
    assert first["missing_operators"] == ["indosat", "telkomsel", "tri", "xl"]
    assert first["latency_deadline"] == WINDOW + STEP + timedelta(minutes=30)
    assert second["complete"] and second["completeness"] == pytest.approx(1.0) and second["latency_deadline"] is None
    assert empty["arrived_operators"] == [] and empty["completeness"] == 0.0  # nothing arrived: still a row


def test_contract_active_period_decides_what_is_expected(settings, tmp_path):
    """An operator onboarded later is not missing before its contract starts."""
    contracts = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, contracts)
    path = contracts / "tri_events.yaml"
    document = yaml.safe_load(path.read_text())
    document["customProperties"].append({"property": "active_from", "value": "2020-04-06T03:15:00Z"})
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    onboarding = dataclasses.replace(settings, contracts_dir=contracts)
    assert not operator_contracts(contracts)["tri"].active_at(WINDOW)
    with connect(settings.warehouse_path) as con:
        for operator in ("telkomsel", "indosat", "xl", "smartfren"):
            _accept(con, operator, WINDOW)
            _accept(con, operator, WINDOW + STEP)
        before, after = completeness_rows(con, onboarding, WINDOW, WINDOW + 2 * STEP, "run")
    assert before["complete"] and "tri" not in before["expected_operators"]
    assert not after["complete"] and after["missing_operators"] == ["tri"]
    assert after["completeness"] == pytest.approx(0.90 / 1.0)


def test_recorded_and_stamped_on_district_density(settings):
    with connect(settings.warehouse_path) as con:
        _accept(con, "telkomsel", WINDOW)
        _accept(con, "xl", WINDOW)
        # xl's drop is here but short (flagged by the volume check): it has data, yet did not report.
        con.execute("UPDATE drops SET volume_flag = 'rows at 40 % of the usual' WHERE operator = 'xl'")
        con.execute("INSERT INTO district_density (window_start, level, district_code, subscribers, people_estimate) "
                    "VALUES (?, 'kelurahan', 'K1', 10, 21)", [WINDOW])
        summary = record_completeness(con, settings, WINDOW, WINDOW + STEP, "run")
        stamped = con.execute("SELECT completeness FROM district_density").fetchone()[0]
        recorded = con.execute("SELECT count(*) FROM window_completeness").fetchone()[0]
    assert summary == {"windows_complete": 0, "windows_incomplete": 1, "operators_expected": 5, "operators_reported_min": 1,
                       "operators_flagged_short": ["xl"], "operators_missing": ["indosat", "smartfren", "tri", "xl"],
                       "completeness_min": 0.47}
    assert stamped == pytest.approx(0.47) and recorded == 1
