"""density_baseline: median/MAD on known data, holidays left out, bootstrap, partition mapping."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import holidays
import pytest

from crowd_platform.density.assets import DENSITY_ASSETS, density_baseline
from crowd_platform.density.baseline import holiday_dates
from crowd_platform.density.checks import density_baseline_enough_observations
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect

DAY = datetime(2020, 4, 24, tzinfo=timezone.utc)  # a Friday; two weeks before is Good Friday
DAY_KEY = "2020-04-24"
TIME = timedelta(hours=3)  # 03:00 UTC = 10:00 WIB -> time_of_day 600


def window(days_back: int, time: timedelta = TIME) -> datetime:
    return DAY - timedelta(days=days_back) + time


def add_density(con, code: str, days_back: int, people: float, time: timedelta = TIME) -> None:
    con.execute(
        "INSERT INTO district_density (window_start, level, district_code, subscribers, people_estimate) "
        "VALUES (?, 'kelurahan', ?, ?, ?)", [window(days_back, time), code, people, people])


def add_site(con, site: str, days_back: int, operator: str, subscribers: int) -> None:
    con.execute(
        "INSERT INTO bts_presence (window_start, operator, place_level, place_id, subscribers, location_rule) "
        "VALUES (?, ?, 'site', ?, ?, 'last')", [window(days_back), operator, site, subscribers])


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    settings = get_settings(tmp_path)
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        # P: weekly history 10, (Good Friday 1000), 20, 30; other weekdays 500 must not count;
        # the day itself (99999) is not history.
        for days_back, people in ((7, 10), (14, 1000), (21, 20), (28, 30), (0, 99999)):
            add_density(con, "P", days_back, people)
        for days_back in (1, 2, 3, 4, 5, 6, 8):
            add_density(con, "P", days_back, 500)
        # Q: only three previous days -> bootstrap 4, 6, 11: median 6, MAD 2.
        for days_back, people in ((1, 4), (2, 6), (3, 11)):
            add_density(con, "Q", days_back, people)
        # R: two days of history only -> no baseline.
        for days_back in (1, 2):
            add_density(con, "R", days_back, 7)
        # T: a window at 20:00 UTC = 03:00 WIB the next local day -> time_of_day 180.
        for days_back, people in ((7, 1), (14, 2), (21, 3), (28, 4)):
            add_density(con, "T", days_back, people, time=timedelta(hours=20))
        # Site S9: two operators summed; weekly 10+5, (holiday), 20+5, 40+5 -> 15, 25, 45.
        for days_back, value in ((7, 10), (14, 900), (21, 20), (28, 40)):
            add_site(con, "S9", days_back, "telkomsel", value)
            add_site(con, "S9", days_back, "xl", 5)
    return tmp_path


def baseline_rows(home: Path) -> dict[tuple[str, str, int], tuple]:
    with connect(get_settings(home).warehouse_path) as con:
        rows = con.execute("SELECT level, place_id, time_of_day, median, mad, n_obs, kind FROM density_baseline "
                           "WHERE day = ?", [DAY.date()]).fetchall()
    return {(level, place, tod): tuple(rest) for level, place, tod, *rest in rows}


def materialize(home: Path):
    with dg.instance_for_test() as instance:
        result = dg.materialize([density_baseline, density_baseline_enough_observations],
                                resources={"crowd": CrowdPlatform(home=str(home))}, instance=instance,
                                partition_key=DAY_KEY)
        assert result.success
        return result.get_asset_check_evaluations()


def test_holiday_calendar_knows_good_friday_2020():
    assert date(2020, 4, 10) in holidays.country_holidays("ID", years=2020)
    assert date(2020, 4, 10) in holiday_dates("ID", date(2020, 3, 27), date(2020, 4, 25))


def test_weekly_median_and_mad_without_holidays(home: Path):
    checks = materialize(home)
    assert all(check.passed for check in checks)
    rows = baseline_rows(home)
    # P: 10, 20, 30 (Good Friday and other weekdays left out) -> median 20, MAD 10
    assert rows[("kelurahan", "P", 600)] == (20.0, 10.0, 3, "weekly")
    assert rows[("kelurahan", "T", 180)] == (2.5, 1.0, 4, "weekly")
    assert rows[("site", "S9", 600)] == (25.0, 10.0, 3, "weekly")


def test_bootstrap_from_previous_days_and_no_row_without_three(home: Path):
    materialize(home)
    rows = baseline_rows(home)
    assert rows[("kelurahan", "Q", 600)] == (6.0, 2.0, 3, "bootstrap")
    assert ("kelurahan", "R", 600) not in rows
    assert all(n_obs >= 3 for _, _, n_obs, _ in rows.values())


def test_rerun_replaces_the_day(home: Path):
    materialize(home)
    first = baseline_rows(home)
    materialize(home)
    with connect(get_settings(home).warehouse_path) as con:
        count = con.execute("SELECT count(*) FROM density_baseline").fetchone()[0]
    assert count == len(first) == len(baseline_rows(home))


def test_partition_mapping_reads_exactly_the_28_previous_days():
    graph = dg.Definitions(assets=DENSITY_ASSETS, resources={"crowd": CrowdPlatform()}).resolve_asset_graph()
    for parent in ("district_density", "bts_presence"):
        upstream = graph.get_parent_partition_keys_for_child(DAY_KEY, dg.AssetKey(parent), dg.AssetKey("density_baseline"))
        keys = sorted(upstream.partitions_subset.get_partition_keys())
        assert len(keys) == 28 * 96
        assert keys[0] == "2020-03-27-00:00" and keys[-1] == "2020-04-23-23:45"
