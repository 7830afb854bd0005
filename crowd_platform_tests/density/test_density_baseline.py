"""density_baseline: median/MAD on known data, holidays left out, bootstrap, partition mapping;
baselines by day type (docs/decisions/012): weekday, saturday, sunday and holiday never mix."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import holidays
import pytest

from crowd_platform.density.assets import DENSITY_ASSETS, density_baseline
from crowd_platform.common.calendar import day_type, holiday_dates, local_day_bounds, local_slot
from crowd_platform.density.baseline import compute_density_baseline
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


# ---------------------------------------------------------------- baselines by day type
# Issue 13 ("Weekends flood"): a quiet Saturday after weekday-only history raised 39 false
# alerts because the bootstrap mixed weekdays into its baseline. Each test below seeds a fresh
# warehouse and runs the real compute function for one UTC day.

def add_at(con, code: str, when: datetime, people: float) -> None:
    con.execute(
        "INSERT INTO district_density (window_start, level, district_code, subscribers, people_estimate) "
        "VALUES (?, 'kelurahan', ?, ?, ?)", [when, code, people, people])


def seed(home: Path, day: datetime, history: dict[str, dict[int, float]], time: timedelta = TIME) -> None:
    """history: place -> {days_back: people}, each at ``time`` UTC of day - days_back."""
    settings = get_settings(home)
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        for code, values in history.items():
            for days_back, people in values.items():
                add_at(con, code, day - timedelta(days=days_back) + time, people)


def compute_day(home: Path, day: datetime, **density) -> dict[tuple[str, int], tuple]:
    """Run compute_density_baseline for one UTC day; (place, time_of_day) -> (median, mad, n_obs, kind, day_type)."""
    settings = get_settings(home)
    if density:
        settings = settings.with_config(density=density)
    with connect(settings.warehouse_path) as con:
        compute_density_baseline(con, settings, day, day + timedelta(days=1), "test-run")
        rows = con.execute("SELECT place_id, time_of_day, median, mad, n_obs, kind, day_type FROM density_baseline "
                           "WHERE day = ?", [day.date()]).fetchall()
    return {(place, tod): tuple(rest) for place, tod, *rest in rows}


SATURDAY = datetime(2020, 4, 25, tzinfo=timezone.utc)   # 03:00 UTC = Saturday 10:00 WIB
WEEKDAYS_BEFORE_SATURDAY = {1: 10, 2: 10, 3: 10, 4: 10, 5: 10, 8: 10, 9: 10, 10: 10, 11: 10, 12: 10}  # Fri..Mon


def test_saturday_after_weekday_only_history_gets_no_baseline(tmp_path: Path):
    seed(tmp_path, SATURDAY, {"W": WEEKDAYS_BEFORE_SATURDAY})
    with dg.instance_for_test() as instance:
        result = dg.materialize([density_baseline, density_baseline_enough_observations],
                                resources={"crowd": CrowdPlatform(home=str(tmp_path))}, instance=instance,
                                partition_key="2020-04-25")
        assert result.success
    with connect(get_settings(tmp_path).warehouse_path) as con:
        rows = con.execute("SELECT count(*) FROM density_baseline WHERE day = DATE '2020-04-25'").fetchone()[0]
    # No row for the day at all: the alert engine records its windows as "not evaluated: no
    # density_baseline for this day" instead of comparing a quiet Saturday with weekdays.
    assert rows == 0


def test_saturday_baseline_comes_from_saturdays_only(tmp_path: Path):
    # Saturdays 7, 14, 21 days back: 100, 110, 130; with the weekdays (10) the median would be 10.
    seed(tmp_path, SATURDAY, {"S": {**WEEKDAYS_BEFORE_SATURDAY, 7: 100, 14: 110, 21: 130}})
    assert compute_day(tmp_path, SATURDAY)[("S", 600)] == (110.0, 10.0, 3, "weekly", "saturday")
    # Too few weeks for weekly: the bootstrap takes the most recent earlier Saturdays, not the last 7 days.
    assert compute_day(tmp_path, SATURDAY, baseline_weeks=2)[("S", 600)] == (110.0, 10.0, 3, "bootstrap", "saturday")


def test_weekday_bootstrap_counts_the_most_recent_weekdays(tmp_path: Path):
    monday = datetime(2020, 4, 27, tzinfo=timezone.utc)
    # Sun 900, Sat 900, Fri 1, Thu 2, Wed 3, Tue 100: the 3 most recent weekdays are Fri, Thu, Wed.
    seed(tmp_path, monday, {"M": {1: 900, 2: 900, 3: 1, 4: 2, 5: 3, 6: 100}})
    assert compute_day(tmp_path, monday, baseline_bootstrap_days=3)[("M", 600)] == (2.0, 1.0, 3, "bootstrap", "weekday")


def test_holiday_target_gets_no_baseline_from_normal_weekdays(tmp_path: Path):
    independence_day = datetime(2020, 8, 17, tzinfo=timezone.utc)  # Monday, public holiday
    assert date(2020, 8, 17) in holiday_dates("ID", date(2020, 8, 1), date(2020, 8, 31))
    # Weekdays before it, four of them Mondays (weekly), and Eid al-Adha (Fri 31 July, 17 days back).
    seed(tmp_path, independence_day, {"H": {3: 10, 4: 10, 5: 10, 6: 10, 7: 10, 14: 10, 21: 10, 28: 10, 17: 60}})
    assert compute_day(tmp_path, independence_day) == {}
    # Holidays compare with holidays: with two earlier Mondays declared extra holidays there are
    # three holiday observations (7, 14 and 17 days back), and only they make the baseline.
    seed(tmp_path, independence_day, {"H2": {3: 10, 4: 10, 5: 10, 6: 10, 7: 40, 14: 50, 21: 10, 17: 60}})
    rows = compute_day(tmp_path, independence_day, extra_holidays=["2020-08-10", "2020-08-03"])
    assert rows[("H2", 600)] == (50.0, 10.0, 3, "bootstrap", "holiday")


def test_extra_holidays_are_holidays(tmp_path: Path):
    tuesday = datetime(2020, 4, 21, tzinfo=timezone.utc)
    seed(tmp_path, tuesday, {"E": {7: 10, 14: 20, 21: 30, 28: 40}})  # the four Tuesdays before
    assert compute_day(tmp_path, tuesday)[("E", 600)] == (25.0, 10.0, 4, "weekly", "weekday")
    # An extra holiday in the history (14 April, 7 days back) is no longer a weekday observation.
    assert compute_day(tmp_path, tuesday, extra_holidays=["2020-04-14"])[("E", 600)] == (30.0, 10.0, 3, "weekly", "weekday")
    # The target day itself declared a holiday: its Tuesday history does not count.
    assert compute_day(tmp_path, tuesday, extra_holidays=["2020-04-21"]) == {}


def test_window_at_18_utc_friday_is_a_saturday_in_wib(tmp_path: Path):
    evening = timedelta(hours=18)  # Friday 18:00 UTC = Saturday 01:00 WIB -> time_of_day 60
    # B: local Saturdays (Fridays 18:00 UTC, 7/14/21 days back) 5, 6, 7; local weekdays 50.
    seed(tmp_path, DAY, {"B": {1: 50, 2: 50, 3: 50, 4: 50, 7: 5, 14: 6, 21: 7}}, time=evening)
    # C: only local weekdays at 01:00 WIB (Mon..Thu 18:00 UTC = Tue..Fri WIB) and at 10:00 WIB.
    seed(tmp_path, DAY, {"C": {1: 50, 2: 50, 3: 50, 4: 50}}, time=evening)
    seed(tmp_path, DAY, {"C": {1: 8, 2: 9, 3: 10, 4: 11}})
    rows = compute_day(tmp_path, DAY)
    assert rows[("B", 60)] == (6.0, 1.0, 3, "weekly", "saturday")
    assert ("C", 60) not in rows  # a Saturday slot, weekday history only
    assert rows[("C", 600)] == (9.5, 1.0, 4, "bootstrap", "weekday")  # same UTC day, Friday 10:00 WIB


def test_existing_warehouse_gains_the_day_type_column(tmp_path: Path):
    import duckdb
    settings = get_settings(tmp_path)
    settings.ensure_dirs()
    old = duckdb.connect(str(settings.warehouse_path))
    old.execute("CREATE TABLE density_baseline (day DATE NOT NULL, level VARCHAR NOT NULL, place_id VARCHAR NOT NULL, "
                "time_of_day INTEGER NOT NULL, median DOUBLE, mad DOUBLE, n_obs INTEGER NOT NULL, "
                "kind VARCHAR NOT NULL, run_id VARCHAR)")
    old.execute("INSERT INTO density_baseline VALUES (DATE '2020-04-20', 'kelurahan', 'X', 600, 1, 0, 3, 'weekly', 'old')")
    old.close()
    seed(tmp_path, DAY, {"C": {1: 8, 2: 9, 3: 10}})  # connect() applies the schema: the ALTER upgrades the table
    assert compute_day(tmp_path, DAY)[("C", 600)] == (9.0, 1.0, 3, "bootstrap", "weekday")
    with connect(settings.warehouse_path) as con:
        assert con.execute("SELECT day_type FROM density_baseline WHERE run_id = 'old'").fetchall() == [(None,)]


def test_time_zone_is_configuration_kathmandu(tmp_path: Path):
    """Asia/Kathmandu (UTC+5:45): Friday 18:00 UTC is Friday 23:45 local, a weekday slot 1425."""
    assert local_slot(DAY + timedelta(hours=18), "Asia/Kathmandu") == (date(2020, 4, 24), 1425)
    assert local_slot(DAY + timedelta(hours=18, minutes=30), "Asia/Kathmandu") == (date(2020, 4, 25), 15)
    assert local_slot(DAY + timedelta(hours=18), "Asia/Jakarta") == (date(2020, 4, 25), 60)
    assert day_type(date(2020, 4, 25), "NP") == "saturday"
    assert local_day_bounds(date(2020, 4, 24), "Asia/Kathmandu") == (
        datetime(2020, 4, 23, 18, 15, tzinfo=timezone.utc), datetime(2020, 4, 24, 18, 15, tzinfo=timezone.utc))
    evening = timedelta(hours=18)
    seed(tmp_path, DAY, {"B": {1: 50, 2: 50, 3: 50, 4: 50, 7: 5, 14: 6, 21: 7}}, time=evening)
    rows = compute_day(tmp_path, DAY, local_timezone="Asia/Kathmandu", holidays_country="NP")
    # Local Fridays 23:45 (7, 14, 21 days back) make the weekly baseline; in WIB the slot is Saturday 01:00.
    assert rows == {("B", 1425): (6.0, 1.0, 3, "weekly", "weekday")}
