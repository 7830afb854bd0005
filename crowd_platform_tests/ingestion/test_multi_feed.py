"""Several event feeds per operator (issue 15): a second event feed (``sms``, its own contract,
layout and drop stream) counts into the same window as the operator's ``events`` feed.

Real DuckDB, real Dagster (instance_for_test), the real landing sensor driven by
``process_pending``; a temporary contracts folder (CROWD_CONTRACTS) with ``telkomsel_sms.yaml``
derived from ``telkomsel_events.yaml``.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from crowd_platform.common.contracts import contract_for, event_contracts, operator_event_contracts, operator_feeds
from crowd_platform.common.settings import CONTRACTS_DIR, get_settings
from crowd_platform.ingestion.fixtures import canonical_cells, canonical_events, cell_ids
from crowd_platform.ingestion.freshness import freshness_report
from crowd_platform.ingestion.lint import lint_directory
from crowd_platform.ingestion.manifest import ManifestError, parse_manifest_bytes
from crowd_platform.runner.orchestration import process_pending
from crowd_platform.simulator.drops import to_operator_layout, write_drop

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)
WINDOW_END = WINDOW + timedelta(minutes=15)
CELLS_WINDOW = WINDOW - timedelta(minutes=15)


def _sms_contract(events_yaml: Path) -> dict:
    """telkomsel's events contract as an sms feed: its own id, layout (plain comma CSV) and feed."""
    document = yaml.safe_load(events_yaml.read_text(encoding="utf-8"))
    document["id"] = "telkomsel-sms"
    document["name"] = "Telkomsel SMS events"
    document["servers"][0]["path"] = "landing/telkomsel/*_sms_*.csv"
    custom = document["customProperties"]
    for item in custom:
        if item["property"] == "layout":
            item["value"] = {**item["value"], "compression": "none", "extension": ".csv", "delimiter": ","}
    custom += [{"property": "feed", "value": "sms"}, {"property": "feed_kind", "value": "events"}]
    return document


@pytest.fixture
def settings(tmp_path, monkeypatch):
    contracts = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, contracts)
    sms = _sms_contract(contracts / "telkomsel_events.yaml")
    (contracts / "telkomsel_sms.yaml").write_text(yaml.safe_dump(sms, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CROWD_CONTRACTS", str(contracts))
    found = get_settings()
    found.ensure_dirs()
    return found


def _rows(settings, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


def _process(settings) -> None:
    with dg.instance_for_test() as instance:
        summary = process_pending(settings, instance, progress=lambda _: None, max_ticks=25)
    assert summary.ok, vars(summary)


def _events_frames(settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events feed, sms feed) of telkomsel for WINDOW: the sms feed repeats two subscribers of
    the events feed (later, on other cells) and has one subscriber of its own."""
    contract = contract_for(settings.contracts_dir, "telkomsel", "events")
    events = canonical_events(contract, WINDOW, 30, seed=1, cells=6)
    shared = events["subscriber_key"].unique(maintain_order=True).to_list()[:2]
    cells = cell_ids(contract, 6)
    sms = pl.DataFrame({
        "subscriber_key": [shared[0], shared[1], "f" * 64],
        "cell_id": [cells[5], cells[4], cells[3]],
        "event_time": [WINDOW + timedelta(minutes=14, seconds=50), WINDOW + timedelta(minutes=14, seconds=51),
                       WINDOW + timedelta(minutes=3)],
        "event_type": ["sms", "sms", "sms"],
    }, schema=events.schema)
    return events, sms


def _write_cells_and_events(settings, events: pl.DataFrame) -> None:
    cells_contract = contract_for(settings.contracts_dir, "telkomsel", "cells")
    write_drop(settings.landing, cells_contract, canonical_cells(cells_contract, 6), feed="cells", operator="telkomsel",
               window_start=CELLS_WINDOW, window_end=CELLS_WINDOW + timedelta(minutes=15), created_at=CELLS_WINDOW)
    write_drop(settings.landing, contract_for(settings.contracts_dir, "telkomsel", "events"), events,
               window_start=WINDOW, window_end=WINDOW_END)


def _write_sms(settings, sms: pl.DataFrame) -> Path:
    contract = contract_for(settings.contracts_dir, "telkomsel", "sms")
    _, manifest = write_drop(settings.landing, contract, to_operator_layout(sms, contract), feed="sms",
                             window_start=WINDOW, window_end=WINDOW_END)
    return manifest


def _expected_last(settings, frames: list[pl.DataFrame]) -> dict[str, int]:
    """Site -> subscribers under the `last` location rule over the union of the feeds."""
    union = pl.concat(frames)
    assert union.select("subscriber_key", "event_time").is_unique().all()  # no ties to break
    last = union.sort("event_time").group_by("subscriber_key").agg(pl.col("cell_id").last())
    sites = dict(_rows(settings, "SELECT cell_id, site_id FROM bts_registry WHERE operator = 'telkomsel'"))
    counts: dict[str, int] = {}
    for cell in last["cell_id"].to_list():
        counts[sites[cell]] = counts.get(sites[cell], 0) + 1
    return counts


def _completeness(settings) -> dict:
    rows = _rows(settings, "SELECT arrived_operators, missing_operators, missing_feeds FROM window_completeness "
                           "WHERE window_start = ?", [WINDOW])
    assert len(rows) == 1
    arrived, missing, feeds = rows[0]
    return {"arrived": arrived, "missing": missing, "missing_feeds": feeds}


# ---------------------------------------------------------------- contracts and manifests
def test_an_sms_contract_is_a_valid_event_feed_of_its_operator(settings):
    assert lint_directory(settings.contracts_dir)[1] == []
    assert operator_feeds(settings.contracts_dir, "telkomsel") == {"cells": "cells", "events": "events", "sms": "events"}
    assert operator_feeds(settings.contracts_dir, "xl") == {"cells": "cells", "events": "events"}
    assert sorted(event_contracts(settings.contracts_dir)["telkomsel"]) == ["events", "sms"]
    # Market share stays per operator: from its events contract.
    assert operator_event_contracts(settings.contracts_dir)["telkomsel"].contract_id == "telkomsel-events"
    sms = contract_for(settings.contracts_dir, "telkomsel", "sms")
    assert (sms.feed, sms.kind, sms.contract_id) == ("sms", "events", "telkomsel-sms")
    assert contract_for(settings.contracts_dir, "xl", "sms") is None


def test_lint_wants_a_kind_and_one_market_share_per_operator(settings):
    path = settings.contracts_dir / "telkomsel_sms.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    custom = document["customProperties"]
    document["customProperties"] = [item for item in custom if item["property"] != "feed_kind"]
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    assert lint_directory(settings.contracts_dir)[1] == [
        "telkomsel_sms.yaml: feed 'sms' of an operator needs customProperties feed_kind: events"]
    document["customProperties"] = [{**item, "value": 0.3} if item["property"] == "market_share" else item for item in custom]
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    assert lint_directory(settings.contracts_dir)[1] == [
        "telkomsel: its event feeds declare different market_share values (events, sms)"]


def test_manifest_names_only_a_feed_of_its_operator(settings):
    _, sms = _events_frames(settings)
    manifest = _write_sms(settings, sms)
    document = json.loads(manifest.read_text())
    feeds = operator_feeds(settings.contracts_dir, "telkomsel")
    assert parse_manifest_bytes(manifest.read_bytes(), folder_operator="telkomsel", feeds=feeds).feed == "sms"
    with pytest.raises(ManifestError, match="manifest feed sms has no data contract for this operator"):
        parse_manifest_bytes(manifest.read_bytes(), folder_operator="telkomsel")  # default feeds: events, cells
    document.pop("pseudonymization")
    with pytest.raises(ManifestError, match="pseudonymization.scheme"):  # an event feed: keys must be pseudonyms
        parse_manifest_bytes(json.dumps(document).encode(), folder_operator="telkomsel", feeds=feeds)
    document["feed"] = "Bad Feed"
    with pytest.raises(ManifestError, match="not a feed name"):
        parse_manifest_bytes(json.dumps(document).encode(), folder_operator="telkomsel", feeds=feeds)


def test_a_feed_without_contract_is_unroutable_with_its_reason(settings):
    _, sms = _events_frames(settings)
    manifest = _write_sms(settings, sms)
    document = json.loads(manifest.read_text())
    document["feed"] = "mms"
    manifest.write_text(json.dumps(document))
    _process(settings)
    reasons = [row[0] for row in _rows(settings, "SELECT reason FROM drops WHERE drop_id LIKE 'unroutable_%'")]
    assert reasons == ["unroutable: manifest feed mms has no data contract for this operator (feeds: cells, events, sms)"]


# ---------------------------------------------------------------- the pipeline
def test_both_event_feeds_of_a_window_count_and_complete_it(settings):
    events, sms = _events_frames(settings)
    _write_cells_and_events(settings, events)
    _process(settings)

    # Only the events feed so far: telkomsel has not arrived, its sms feed is missing.
    state = _completeness(settings)
    assert "telkomsel" in state["missing"] and "telkomsel" not in state["arrived"]
    assert "telkomsel/sms" in state["missing_feeds"] and "telkomsel/events" not in state["missing_feeds"]
    before = dict(_rows(settings, "SELECT place_id, subscribers FROM bts_presence WHERE operator = 'telkomsel' "
                                  "AND place_level = 'site' AND window_start = ?", [WINDOW]))
    assert before == _expected_last(settings, [events])

    _write_sms(settings, sms)
    _process(settings)

    drops = _rows(settings, "SELECT feed, feed_kind, status, superseded_by FROM drops WHERE operator = 'telkomsel' "
                            "AND window_start = ? ORDER BY feed", [WINDOW])
    assert drops == [("events", "events", "accepted", None), ("sms", "events", "accepted", None)]
    after = dict(_rows(settings, "SELECT place_id, subscribers FROM bts_presence WHERE operator = 'telkomsel' "
                                 "AND place_level = 'site' AND window_start = ?", [WINDOW]))
    expected = _expected_last(settings, [events, sms])
    assert after == expected
    # The sms-only subscriber counts; the two in both feeds count once each.
    assert sum(after.values()) == events["subscriber_key"].n_unique() + 1
    state = _completeness(settings)
    assert "telkomsel" in state["arrived"] and "telkomsel" not in state["missing"]
    assert not [feed for feed in state["missing_feeds"] if feed.startswith("telkomsel/")]
    density_drops = _rows(settings, "SELECT DISTINCT drop_ids FROM district_density WHERE window_start = ?", [WINDOW])
    assert len(density_drops) == 1 and len(density_drops[0][0]) == 2


def test_volume_history_and_freshness_are_per_feed(settings):
    events, sms = _events_frames(settings)
    _write_cells_and_events(settings, events)
    _write_sms(settings, sms)
    _process(settings)

    profiles = _rows(settings, "SELECT feed, rows FROM drop_profiles WHERE operator = 'telkomsel' ORDER BY feed")
    assert profiles == [("events", events.height), ("sms", sms.height)]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        report = freshness_report(con, settings, WINDOW_END + timedelta(minutes=5))
    by_name = {operator.name: operator for operator in report.operators}
    assert {"telkomsel", "telkomsel/sms", "xl"} <= set(by_name)
    assert by_name["telkomsel/sms"].last_window_start == WINDOW and by_name["telkomsel"].last_window_start == WINDOW
    assert by_name["xl"].last_window_start is None
