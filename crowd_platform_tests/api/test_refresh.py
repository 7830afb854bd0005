"""The refresh model: a change to the warehouse reaches the API within seconds; while a writer
holds the warehouse, the last copy keeps being served and says its age; published indicator
tables are served as they appear, suppressed counts never as numbers."""

from __future__ import annotations

import time
from datetime import date, timedelta

import duckdb
import pytest

from crowd_platform_tests.api import published_warehouse
from crowd_platform_tests.api.conftest import settings_for

NEW_WINDOW = published_warehouse.T0 + 10 * published_warehouse.STEP
NEW_ISO = NEW_WINDOW.strftime("%Y-%m-%dT%H:%M:%SZ")


def _add_window(path, people: int = 4242) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("INSERT INTO district_density_published (window_start, level, district_code, people_estimate, "
                    "density_per_km2, suppressed) VALUES (?, 'kecamatan', 'K0000', ?, 424.2, false)", [NEW_WINDOW, people])
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_refresh_after_the_warehouse_changes(fresh_server):
    before = fresh_server.get("/windows")
    version = int(before.headers["X-Snapshot-Version"])
    assert NEW_ISO not in before.json()["windows"]
    _add_window(fresh_server.home / "warehouse.duckdb")
    after = _wait_for(lambda: (r := fresh_server.get("/windows")).status_code == 200 and NEW_ISO in r.json()["windows"] and r,
                      10, "the new window is served within seconds")
    assert int(after.headers["X-Snapshot-Version"]) > version
    rows = fresh_server.get("/density", params={"level": "kecamatan", "window": NEW_ISO}).json()["rows"]
    assert [(row["district_code"], row["people_estimate"]) for row in rows] == [("K0000", 4242)]


def test_locked_warehouse_keeps_serving_the_last_copy(fresh_server):
    path = fresh_server.home / "warehouse.duckdb"
    first = fresh_server.get("/windows")
    assert "X-Snapshot-Stale" not in first.headers
    writer = duckdb.connect(str(path))  # a pipeline writer holding the file
    try:
        writer.execute("INSERT INTO district_density_published (window_start, level, district_code, people_estimate, "
                       "density_per_km2, suppressed) VALUES (?, 'kecamatan', 'K0000', 1, 1.0, false)", [NEW_WINDOW])
        writer.execute("CHECKPOINT")
        stale = _wait_for(lambda: "X-Snapshot-Stale" in (r := fresh_server.get("/windows")).headers and r, 10,
                          "a failed refresh is said in a header")
        assert stale.status_code == 200 and NEW_ISO not in stale.json()["windows"], "the last copy is served"
        time.sleep(1.2)
        later = fresh_server.get("/density", params={"level": "kecamatan", "window": published_warehouse.T0.isoformat()})
        assert later.status_code == 200 and float(later.headers["X-Snapshot-Age"]) >= 1.0
        assert later.headers["X-Snapshot-Version"] == first.headers["X-Snapshot-Version"]
        assert fresh_server.get("/health", token=None).json()["snapshot"]["stale"] is True
    finally:
        writer.close()
    fresh = _wait_for(lambda: NEW_ISO in (r := fresh_server.get("/windows")).json()["windows"] and r, 10,
                      "the copy is refreshed once the writer lets go")
    assert "X-Snapshot-Stale" not in fresh.headers


def _indicator_table(settings) -> str | None:
    from crowd_platform.api.datasets import DEDICATED, published_tables

    tables = [name for name in published_tables(settings) if name not in DEDICATED]
    return "district_unique_subscribers_published" if "district_unique_subscribers_published" in tables else None


def test_published_indicator_tables(fresh_server):
    settings = settings_for(fresh_server.home)
    table = _indicator_table(settings)
    if table is None:
        pytest.skip("district_unique_subscribers_published is not marked published in the contract")
    day = date(2020, 4, 3)
    con = duckdb.connect(str(fresh_server.home / "warehouse.duckdb"))
    try:
        con.executemany(f"INSERT INTO {table} (day, grain, hour, level, district_code, subscribers, suppressed, suppression) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(day, "day", None, "kecamatan", "K0000", 800, False, None),
                         (day, "hour", 9, "kecamatan", "K0001", None, True, "primary"),
                         (day - timedelta(days=1), "day", None, "kelurahan", "3100000000", 90, False, None)])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    rows = _wait_for(lambda: (r := fresh_server.get(f"/indicators/{table}", params={"day": "2020-04-03"})).status_code == 200
                     and r.json()["rows"], 10, "the indicator table is served after the refresh")
    assert {(row["district_code"], row["subscribers"], row["suppressed"]) for row in rows} == {
        ("K0000", 800, False), ("K0001", None, True)}
    assert next(row for row in rows if row["suppressed"])["hour"] == 9, "keys stay, counts go"
    level = fresh_server.get(f"/indicators/{table}", params={"level": "kelurahan"}).json()["rows"]
    assert [row["district_code"] for row in level] == ["3100000000"]
    assert fresh_server.get(f"/indicators/{table}", token="density").status_code == 403
    assert fresh_server.get(f"/indicators/{table}", params={"day": "3 April"}).status_code == 400
    assert fresh_server.get("/indicators/district_density_published").status_code == 404
