"""presence_events reads each accepted file with its window and operator as constants
(sql/density/bts_presence_events.sql), or for many files the list joined on file_index
(bts_presence_events_list.sql); both are tested. These tests hold it to the query it replaced (the join of
every event's file name to presence_inputs, kept below verbatim as the reference) on random data
with several operators, several windows, two event feeds of one operator and a superseded drop:
every rule gives exactly the same bts_presence rows, and district_presence_daily the same values.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect, read_sql
from crowd_platform.common.calendar import local_day_bounds
from crowd_platform.density.presence import compute_bts_presence, compute_district_presence_daily, load_presence_inputs

WINDOWS = [datetime(2020, 3, 10, 1, 0, tzinfo=timezone.utc) + timedelta(minutes=15 * index) for index in range(3)]
OPERATORS = ("telkomsel", "indosat", "xl")
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)

# The events view and rule queries before the per-file scan (2026-12-07), as reference.
REFERENCE_EVENTS = """
CREATE OR REPLACE TEMP VIEW presence_events_reference AS
SELECT i.window_start, i.operator, hash(e.subscriber_key) AS subscriber, r.cell_rank, r.cell_id, r.site_id, e.event_time
FROM read_parquet(getvariable('presence_files'), filename = true) AS e
JOIN presence_inputs AS i ON i.lake_path = e.filename
JOIN presence_cells AS r
    ON r.cell_id = e.cell_id AND r.operator = i.operator
   AND e.event_time >= r.valid_from AND (r.valid_to IS NULL OR e.event_time < r.valid_to)
"""
REFERENCE_RULES = {
    "any": """
WITH subscriber_cells AS (
    SELECT window_start, operator, subscriber, cell_id, site_id FROM presence_events_reference
    GROUP BY window_start, operator, subscriber, cell_id, site_id
),
subscriber_sites AS (
    SELECT window_start, operator, subscriber, site_id FROM subscriber_cells GROUP BY window_start, operator, subscriber, site_id
)
SELECT window_start, operator, 'cell', cell_id, count(*) FROM (
    SELECT window_start, operator, subscriber, cell_id FROM subscriber_cells GROUP BY window_start, operator, subscriber, cell_id
) GROUP BY window_start, operator, cell_id
UNION ALL
SELECT window_start, operator, 'site', site_id, count(*) FROM subscriber_sites GROUP BY window_start, operator, site_id
""",
    "last": """
WITH located AS (
    SELECT window_start, operator,
           CAST(max(CAST(epoch_us(event_time) AS HUGEINT) * 4294967296 + cell_rank) & 4294967295 AS BIGINT) AS cell_rank
    FROM presence_events_reference GROUP BY window_start, operator, subscriber
),
placed AS (SELECT l.window_start, l.operator, c.cell_id, c.site_id FROM located AS l JOIN presence_cells AS c USING (cell_rank))
SELECT window_start, operator, 'cell', cell_id, count(*) FROM placed GROUP BY window_start, operator, cell_id
UNION ALL
SELECT window_start, operator, 'site', site_id, count(*) FROM placed GROUP BY window_start, operator, site_id
""",
    "modal": """
WITH per_cell AS (
    SELECT window_start, operator, subscriber, site_id, cell_id, count(*) AS events, max(event_time) AS last_time
    FROM presence_events_reference GROUP BY window_start, operator, subscriber, site_id, cell_id
),
per_site AS (
    SELECT window_start, operator, subscriber, site_id, sum(events) AS events, max(last_time) AS last_time,
           arg_max(cell_id, (last_time, cell_id)) AS last_cell
    FROM per_cell GROUP BY window_start, operator, subscriber, site_id
),
located AS (
    SELECT window_start, operator, arg_max({'cell_id': last_cell, 'site_id': site_id}, (events, last_time, site_id)) AS place
    FROM per_site GROUP BY window_start, operator, subscriber
)
SELECT window_start, operator, 'cell', place.cell_id, count(*) FROM located GROUP BY window_start, operator, place.cell_id
UNION ALL
SELECT window_start, operator, 'site', place.site_id, count(*) FROM located GROUP BY window_start, operator, place.site_id
""",
}


def _key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _write(home: Path, operator: str, window: datetime, drop_id: str, rows: list[tuple[str, str, datetime]]) -> str:
    relative = f"lake/events/date={window:%Y-%m-%d}/window={window:%H%M}/operator={operator}/{drop_id}.parquet"
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {"subscriber_key": [who for who, _, _ in rows], "cell_id": [cell for _, cell, _ in rows],
         "event_time": [moment for _, _, moment in rows], "event_type": ["data"] * len(rows)},
        schema={"subscriber_key": pl.String, "cell_id": pl.String, "event_time": pl.Datetime("us", "UTC"), "event_type": pl.String},
    ).write_parquet(path)
    return relative


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """3 windows x 3 operators of random events; telkomsel also has an sms feed in every window, and
    a superseded delivery in the first; one cell changes site in the middle of the second window."""
    generator = random.Random(18)
    settings = get_settings(tmp_path)
    settings.ensure_dirs()
    move = WINDOWS[1] + timedelta(minutes=7)
    with connect(settings.warehouse_path) as con:
        for operator in OPERATORS:
            for cell in range(8):
                site = f"{operator}-s{cell // 3}"
                if cell == 7:  # moves from site 0 to site 2 mid-window
                    rows = [(f"{operator}-s0", EPOCH, move), (f"{operator}-s2", move, None)]
                else:
                    rows = [(site, EPOCH, None)]
                for site_id, valid_from, valid_to in rows:
                    con.execute("INSERT INTO bts_registry (cell_id, operator, site_id, lon, lat, valid_from, valid_to) "
                                "VALUES (?, ?, ?, 106.8, -6.2, ?, ?)", [f"{operator}-c{cell}", operator, site_id, valid_from, valid_to])
            for site in range(3):
                con.execute("INSERT INTO bts_district_weights VALUES (?, ?, ?, ?, 'test')", [f"{operator}-s{site}", operator, "L1", 0.6])
                con.execute("INSERT INTO bts_district_weights VALUES (?, ?, ?, ?, 'test')", [f"{operator}-s{site}", operator, "L2", 0.4])
        con.execute("INSERT INTO districts (district_code, level, level_rank, parent_code, is_admin_unit, area_km2) VALUES "
                    "('K1', 'kabkota', 1, NULL, true, 5.0), ('L1', 'kelurahan', 0, 'K1', true, 2.0), "
                    "('L2', 'kelurahan', 0, 'K1', true, 3.0)")
        feeds = [(operator, "events") for operator in OPERATORS] + [("telkomsel", "sms")]
        for window in WINDOWS:
            for operator, feed in feeds:
                deliveries = [("superseded", 1), ("accepted", 2)] if (window == WINDOWS[0] and feed == "events") else [("accepted", 1)]
                for status, delivery in deliveries:
                    rows = []
                    for _ in range(generator.randint(150, 250)):
                        who = _key(f"{operator}-{generator.randint(0, 60)}")
                        cell = f"{operator}-c{generator.randint(0, 9)}"  # c8, c9: not in the registry
                        # whole minutes: many ties on time between cells
                        rows.append((who, cell, window + timedelta(minutes=generator.randint(0, 14))))
                    drop_id = f"{operator}_{feed}_{window:%H%M}_d{delivery}"
                    con.execute(
                        "INSERT INTO drops (drop_id, operator, feed, feed_kind, window_start, window_end, status, lake_path, contract_version) "
                        "VALUES (?, ?, ?, 'events', ?, ?, ?, ?, '1.0.0')",
                        [drop_id, operator, feed, window, window + timedelta(minutes=15), status,
                         _write(tmp_path, operator, window, drop_id, rows)])
    return tmp_path


@pytest.fixture(params=["per_file", "file_list"])
def scan(request, monkeypatch) -> str:
    """Both forms of presence_events: one branch per file, and (many files) the list on file_index."""
    if request.param == "file_list":
        monkeypatch.setattr("crowd_platform.density.presence.PER_FILE_SCAN_MAX_FILES", 0)
    return request.param


@pytest.mark.parametrize("rule", ["any", "last", "modal"])
def test_per_file_scan_gives_the_rows_of_the_file_name_join(home: Path, rule: str, scan: str):
    settings = get_settings(home)
    start, end = WINDOWS[0], WINDOWS[-1] + timedelta(minutes=15)
    with connect(settings.warehouse_path) as con:
        summary = compute_bts_presence(con, settings, start, end, "test", rule=rule)
        assert summary["drops"] == 3 * 4 and summary["windows"] == 3 and summary["operators"] == 3
        platform = sorted(con.execute(
            "SELECT window_start, operator, place_level, place_id, subscribers FROM bts_presence WHERE location_rule = ?", [rule]).fetchall())
        load_presence_inputs(con, settings, start, end)
        con.execute(REFERENCE_EVENTS)
        reference = sorted(con.execute(REFERENCE_RULES[rule]).fetchall())
    assert platform == reference
    assert len(platform) > 50


def test_per_file_scan_daily_presence_matches_the_file_name_join(home: Path, scan: str):
    settings = get_settings(home)
    day = WINDOWS[0].date()
    with connect(settings.warehouse_path) as con:
        compute_district_presence_daily(con, settings, *local_day_bounds(day, settings.config.density.local_timezone), "test")
        platform = sorted(con.execute("SELECT level, district_code, round(subscribers, 9) FROM district_presence_daily").fetchall())
        # The same day through the reference view (district_presence_daily.sql reads presence_events).
        from crowd_platform.density.presence import register_geography

        load_presence_inputs(con, settings, *local_day_bounds(day, settings.config.density.local_timezone))
        register_geography(con, settings, list(OPERATORS))
        con.execute(REFERENCE_EVENTS.replace("presence_events_reference", "presence_events"))
        con.execute("DELETE FROM district_presence_daily")
        con.execute(read_sql("density/district_presence_daily"), {"day": day, "run_id": "reference"})
        reference = sorted(con.execute("SELECT level, district_code, round(subscribers, 9) FROM district_presence_daily").fetchall())
    assert platform and platform == reference


# ---------------------------------------------------------------- counted away from the warehouse
def _presence_rows(settings) -> list[tuple]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return sorted(con.execute("SELECT window_start, operator, place_level, place_id, subscribers FROM bts_presence").fetchall())


def test_counting_away_from_the_warehouse_equals_counting_under_it(home: Path):
    """The asset's path (warehouse opened to read inputs, closed while counting in a private
    engine, opened to write) against counting with the warehouse held (the fallback)."""
    settings = get_settings(home)
    start, end = WINDOWS[0], WINDOWS[-1] + timedelta(minutes=15)
    away = compute_bts_presence(lambda: connect(settings.warehouse_path), settings, start, end, "away", rule="last")
    away_rows = _presence_rows(settings)
    held = compute_bts_presence(lambda: connect(settings.warehouse_path), settings, start, end, "held", rule="last", attempts=1)
    assert away == held and away_rows == _presence_rows(settings) and len(away_rows) > 50


def test_drops_published_while_counting_are_counted_again(home: Path, monkeypatch):
    """Another run supersedes a drop of the range while this one counts: the stale count is not
    written; the range is counted again over the drops accepted now."""
    from crowd_platform.density import presence

    settings = get_settings(home)
    start, end = WINDOWS[0], WINDOWS[-1] + timedelta(minutes=15)
    real = presence._count_presence_privately
    calls = []

    def count_while_another_run_publishes(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 1:
            with connect(settings.warehouse_path) as other:  # the warehouse is free while we count
                other.execute("UPDATE drops SET status = 'superseded' WHERE drop_id = 'xl_events_0115_d1'")
        return real(*args, **kwargs)

    monkeypatch.setattr(presence, "_count_presence_privately", count_while_another_run_publishes)
    result = compute_bts_presence(lambda: connect(settings.warehouse_path), settings, start, end, "run", rule="last")
    assert calls == [12, 11] and result["drops"] == 11
    written = _presence_rows(settings)
    monkeypatch.setattr(presence, "_count_presence_privately", real)
    compute_bts_presence(lambda: connect(settings.warehouse_path), settings, start, end, "again", rule="last")
    assert written == _presence_rows(settings)
    with connect(settings.warehouse_path, read_only=True) as con:
        details = con.execute("SELECT details FROM audit_log WHERE action = 'bts_presence.materialize' AND run_id = 'run'").fetchone()[0]
    assert "xl_events_0115_d1" not in details


def test_drops_that_keep_changing_are_counted_with_the_warehouse_held(home: Path, monkeypatch):
    from crowd_platform.density import presence

    settings = get_settings(home)
    start, end = WINDOWS[0], WINDOWS[-1] + timedelta(minutes=15)
    real = presence._count_presence_privately
    changing = iter(["telkomsel_events_0100_d2", "indosat_events_0100_d2"])

    def count_while_drops_keep_changing(*args, **kwargs):
        with connect(settings.warehouse_path) as other:
            other.execute("UPDATE drops SET status = 'superseded' WHERE drop_id = ?", [next(changing)])
        return real(*args, **kwargs)

    monkeypatch.setattr(presence, "_count_presence_privately", count_while_drops_keep_changing)
    result = compute_bts_presence(lambda: connect(settings.warehouse_path), settings, start, end, "run", rule="last", attempts=3)
    assert result["drops"] == 10  # both changes seen; the third count ran under the warehouse
    written = _presence_rows(settings)
    monkeypatch.setattr(presence, "_count_presence_privately", real)
    compute_bts_presence(lambda: connect(settings.warehouse_path), settings, start, end, "again", rule="last")
    assert written == _presence_rows(settings)
