"""A truncated cell list (half the operator's cells missing) is held in quarantine for review
instead of decommissioning half the network; a person's release applies it. A normal update
(a few cells retired) is applied as before."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb

from crowd_platform.cli import main
from crowd_platform.common.contracts import contract_for
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.ingestion.assets import operator_drops, staged_events
from crowd_platform.ingestion.fixtures import canonical_cells
from crowd_platform.simulator.drops import write_drop

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)


def _setup(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    settings = get_settings()
    settings.ensure_dirs()
    events = contract_for(settings.contracts_dir, "telkomsel", "events")
    cells = canonical_cells(events, cells=20)
    with connect(settings.warehouse_path) as con:  # the registry as an earlier full list left it
        con.executemany("INSERT INTO bts_registry (cell_id, operator, site_id, lon, lat, radio, valid_from) "
                        "VALUES (?, 'telkomsel', ?, ?, ?, 'LTE', TIMESTAMPTZ '2020-03-01 00:00:00+00')",
                        [[row["cell_id"], f"telkomsel:{index}", row["lon"], row["lat"]]
                         for index, row in enumerate(cells.iter_rows(named=True))])
    return settings, contract_for(settings.contracts_dir, "telkomsel", "cells"), cells


def _deliver(settings, contract, cells, window: datetime) -> dict:
    write_drop(settings.landing, contract, cells, window_start=window, window_end=window + timedelta(minutes=15),
               feed="cells", operator="telkomsel")
    with dg.instance_for_test() as instance:
        assert dg.materialize([operator_drops, staged_events], resources={"crowd": CrowdPlatform(home=str(settings.home))},
                              instance=instance, partition_key=f"{window:%Y-%m-%d-%H:%M}").success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        cursor = con.execute("SELECT drop_id, status, reason FROM drops WHERE feed = 'cells' AND window_start = ?", [window])
        return dict(zip(("drop_id", "status", "reason"), cursor.fetchone()))


def test_truncated_cell_list_is_held_for_review_and_applied_on_release(tmp_path, monkeypatch, capsys):
    settings, contract, cells = _setup(tmp_path, monkeypatch)
    drop = _deliver(settings, contract, cells.head(10), WINDOW)
    assert drop["status"] == "quarantined"
    assert drop["reason"] == ("cell list held for review: it would retire 10 of telkomsel's 20 current cells "
                              "(50%, more than 20%); release it to apply")
    capsys.readouterr()
    assert main(["quarantine", "release", drop["drop_id"]]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{drop['drop_id']}: accepted")


def test_a_normal_update_is_applied(tmp_path, monkeypatch):
    settings, contract, cells = _setup(tmp_path, monkeypatch)
    assert _deliver(settings, contract, cells.head(18), WINDOW)["status"] == "accepted"  # 2 of 20 retired: 10 %
