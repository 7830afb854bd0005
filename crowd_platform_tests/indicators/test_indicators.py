"""Mobility indicators on hand-made events whose answers are worked out in the comments.

Real DuckDB file and Parquet lake files (conftest.py), local days of Asia/Jakarta (WIB, UTC+7).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from crowd_platform.common.calendar import local_day_bounds
from crowd_platform.common.settings import SettingsError
from crowd_platform.density.presence import compute_district_presence_daily
from crowd_platform.indicators.compute import (
    compute_district_daily_location,
    compute_district_od_flows,
    compute_district_unique_subscribers,
    compute_indicators,
    compute_subscriber_daily_location,
    local_days,
)
from crowd_platform_tests.indicators.area import DAY, PREVIOUS, wib


def located(con, rule: str, level: str = "kelurahan", day=DAY) -> dict[str, int]:
    rows = con.execute("SELECT district_code, subscribers FROM district_daily_location WHERE day = ? AND rule = ? "
                       "AND level = ? AND subscribers > 0", [day, rule, level]).fetchall()
    return dict(rows)


def flows(con, kind: str, level: str = "kelurahan", day=DAY) -> dict[tuple[str, str], int]:
    rows = con.execute("SELECT origin_code, destination_code, subscribers FROM district_od_flows WHERE day = ? "
                       "AND flow_kind = ? AND level = ?", [day, kind, level]).fetchall()
    return {(o, d): n for o, d, n in rows}


def test_daily_location_last_and_modal_with_ties_to_the_latest(area):
    _, settings, con, lake = area
    lake.add("telkomsel", [
        # A: L1 (S1's largest weight) twice, then L2 once: last L2, modal L1.
        ("A", "c1", wib(DAY, 8)), ("A", "c1", wib(DAY, 9)), ("A", "c2", wib(DAY, 10)),
        # B: L2 then L1, one event each: tie, the latest event's district wins -> L1 for both rules.
        ("B", "c2", wib(DAY, 8)), ("B", "c1", wib(DAY, 9)),
        # C: L3 twice, L2 twice; the latest is at L3 -> modal L3; last L3.
        ("C", "c2", wib(DAY, 1)), ("C", "c3", wib(DAY, 2)), ("C", "c2", wib(DAY, 3)), ("C", "c3", wib(DAY, 4)),
    ])
    compute_subscriber_daily_location(con, settings, DAY, "run")
    compute_district_daily_location(con, settings, DAY, "run")
    assert located(con, "last") == {"L2": 1, "L1": 1, "L3": 1}
    assert located(con, "modal") == {"L1": 2, "L3": 1}
    # Levels add up: every subscriber has one district at every level.
    assert located(con, "modal", "kecamatan") == {"KC1": 2, "KC2": 1}
    assert located(con, "last", "kabkota") == {"K1": 3}
    # Dense: districts without anybody have a 0 row.
    assert con.execute("SELECT count(*) FROM district_daily_location WHERE day = ?", [DAY]).fetchall()[0][0] == 2 * 6


def test_last_event_of_the_local_day_near_midnight_jakarta_vs_utc(area):
    home, settings, con, lake = area
    # M: 23:50 WIB on DAY at c1 (L1), then 00:10 WIB on DAY+1 (17:10 UTC on DAY) at c3 (L3).
    lake.add("telkomsel", [("M", "c1", wib(DAY, 23, 50)), ("M", "c3", wib(DAY, 23, 50) + timedelta(minutes=20))])
    compute_subscriber_daily_location(con, settings, DAY, "run")
    compute_district_daily_location(con, settings, DAY, "run")
    assert located(con, "last") == {"L1": 1}        # the local day ends at 17:00 UTC
    utc_settings = settings.with_config(density={"local_timezone": "UTC"})
    compute_subscriber_daily_location(con, utc_settings, DAY, "run")
    compute_district_daily_location(con, utc_settings, DAY, "run")
    assert located(con, "last") == {"L3": 1}        # the UTC day holds both events: the later one wins


def test_consecutive_day_flows_only_for_subscribers_seen_both_days(area):
    _, settings, con, lake = area
    lake.add("telkomsel", [("A", "c1", wib(PREVIOUS, 12)), ("Q", "c1", wib(PREVIOUS, 12))], key_id="tsel-w10")
    # A moves L1 -> L3; R is new on DAY (not in flows); Q is not seen on DAY.
    lake.add("telkomsel", [("A", "c3", wib(DAY, 12)), ("R", "c2", wib(DAY, 12))], key_id="tsel-w10")
    for day in (PREVIOUS, DAY):
        compute_subscriber_daily_location(con, settings, day, "run")
    result = compute_district_od_flows(con, settings, DAY, "run")
    assert flows(con, "consecutive_days") == {("L1", "L3"): 1}
    assert flows(con, "consecutive_days", "kecamatan") == {("KC1", "KC2"): 1}
    assert flows(con, "consecutive_days", "kabkota") == {("K1", "K1"): 1}
    assert result["operators_with_stable_key"] == 1


def test_no_consecutive_day_flows_across_a_key_rotation(area):
    _, settings, con, lake = area
    lake.add("telkomsel", [("A", "c1", wib(PREVIOUS, 12))], key_id="tsel-20200309")
    lake.add("telkomsel", [("A", "c3", wib(DAY, 12))], key_id="tsel-20200310")
    for day in (PREVIOUS, DAY):
        compute_subscriber_daily_location(con, settings, day, "run")
    result = compute_district_od_flows(con, settings, DAY, "run")
    assert flows(con, "consecutive_days") == {}
    assert result["operators_with_stable_key"] == 0


def test_morning_evening_flows_use_configured_local_hours(area):
    _, settings, con, lake = area
    lake.add("telkomsel", [
        ("A", "c1", wib(DAY, 7)), ("A", "c2", wib(DAY, 17)),     # L1 -> L2
        ("B", "c3", wib(DAY, 9, 50)), ("B", "c3", wib(DAY, 19)),  # L3 -> L3
        ("C", "c1", wib(DAY, 11)), ("C", "c2", wib(DAY, 17)),     # 11:00 is not morning: no flow
    ])
    compute_subscriber_daily_location(con, settings, DAY, "run")
    compute_district_od_flows(con, settings, DAY, "run")
    assert flows(con, "morning_evening") == {("L1", "L2"): 1, ("L3", "L3"): 1}
    wider = settings.with_config(indicators={"morning_hours": [6, 12]})
    compute_subscriber_daily_location(con, wider, DAY, "run")
    compute_district_od_flows(con, wider, DAY, "run")
    assert flows(con, "morning_evening") == {("L1", "L2"): 2, ("L3", "L3"): 1}


def test_unique_subscribers_per_day_equal_district_presence_daily_and_per_hour(area):
    _, settings, con, lake = area
    lake.add("telkomsel", [("A", "c1", wib(DAY, 8)), ("A", "c2", wib(DAY, 8, 20)), ("B", "c1", wib(DAY, 9)),
                           ("B", "c1", wib(DAY, 23, 55))])
    lake.add("indosat", [("X", "i1", wib(DAY, 9))])
    compute_district_unique_subscribers(con, settings, DAY, "run")
    compute_district_presence_daily(con, settings, *local_day_bounds(DAY, settings.config.density.local_timezone), "run")
    ours = dict(con.execute("SELECT district_code, subscribers FROM district_unique_subscribers "
                            "WHERE day = ? AND grain = 'day' AND subscribers > 0", [DAY]).fetchall())
    theirs = dict(con.execute("SELECT district_code, subscribers FROM district_presence_daily WHERE day = ?",
                              [DAY]).fetchall())
    assert ours.keys() == theirs.keys()
    assert all(abs(ours[code] - theirs[code]) < 1e-9 for code in ours)
    # A at S1 (0.7 L1 / 0.3 L2) and S2 (L2): L2 = 1 - 0.7 * 0 = 1; B: L1 0.7, L2 0.3.
    assert ours["L2"] == pytest.approx(1.3) and ours["L1"] == pytest.approx(1.4) and ours["K1"] == pytest.approx(3.0)
    hourly = dict(con.execute("SELECT hour, subscribers FROM district_unique_subscribers WHERE day = ? "
                              "AND grain = 'hour' AND district_code = 'K1'", [DAY]).fetchall())
    assert hourly == {8: pytest.approx(1.0), 9: pytest.approx(2.0), 23: pytest.approx(1.0)}


def test_published_tables_hide_small_counts(area):
    _, settings, con, lake = area
    k = settings.k_anonymity
    # 20 subscribers at L1 all day and in the morning, evening at L2; 3 more at L3 all day.
    people = [(f"P{i}", "c1", wib(DAY, 8)) for i in range(20)] + [(f"P{i}", "c2", wib(DAY, 18)) for i in range(20)]
    people += [(f"Z{i}", "c3", wib(DAY, 12)) for i in range(3)]
    lake.add("telkomsel", people)
    compute_indicators(con, settings, DAY, "run")
    for table in ("district_unique_subscribers_published", "district_daily_location_published",
                  "district_od_flows_published"):
        shown = [n for (n,) in con.execute(f"SELECT subscribers FROM {table} WHERE subscribers IS NOT NULL").fetchall()]
        assert all(n > k for n in shown), table
        assert con.execute(f"SELECT count(*) FROM {table} WHERE suppressed AND subscribers IS NOT NULL").fetchall()[0][0] == 0
    # last: L2 20, L3 3 -> L3 hidden (primary); KC2 = L3 alone under K1... the totals cannot give L3 back.
    published = dict(con.execute("SELECT district_code, subscribers FROM district_daily_location_published "
                                 "WHERE rule = 'last'").fetchall())
    assert published["L3"] is None and published["KC2"] is None
    assert published["K1"] is None or published["KC1"] is None  # K1 - KC1 would be KC2 = L3
    flow = dict(((o, d, t), n) for o, d, t, n in con.execute(
        "SELECT origin_code, destination_code, total, subscribers FROM district_od_flows_published "
        "WHERE flow_kind = 'morning_evening' AND level = 'kelurahan'").fetchall())
    assert flow[("L1", "L2", None)] == 20 and flow[("L1", None, "origin")] == 20


def test_settings_reject_bad_indicator_hours(area):
    _, settings, _, _ = area
    with pytest.raises(SettingsError):
        settings.with_config(indicators={"morning_hours": [10, 6]})
    with pytest.raises(SettingsError):
        settings.with_config(indicators={"morning_hours": [6, 17]})


def test_local_days_of_a_partition_range():
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Jakarta")
    start = datetime(2020, 3, 10, tzinfo=zone).astimezone(timezone.utc)
    assert local_days(start, start + timedelta(days=2), "Asia/Jakarta") == [DAY, DAY + timedelta(days=1)]
