"""`crowd-platform demo` shows alerts for its injected gatherings and none on its quiet day.

A shorter equivalent of `make demo`: the same command, week (Mon 30 March - Fri 3 April 2020),
subscribers (30 000), seed, gatherings and sampled rules, but only two UTC hours per day
(11:00-13:00 WIB: the Friday prayer at Masjid Istiqlal starts at 11:30). Mon-Wed build the
bootstrap baseline; Thursday is the quiet day, Friday has the gatherings.
"""

from __future__ import annotations

import os
from datetime import date

import duckdb
import pytest

from crowd_platform.cli import main
from crowd_platform.runner.demo import DEMO_DAYS, DEMO_START, alerts_by_day

pytestmark = pytest.mark.xdist_group("demo")

HOURS = "4-6"  # UTC: 11:00-13:00 WIB
QUIET_DAY = date(2020, 4, 2)
GATHERING_DAY = date(2020, 4, 3)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo")
    previous = {key: os.environ.get(key) for key in ("CROWD_HOME", "DAGSTER_HOME", "CROWD_ALERT_RULES")}
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    os.environ.pop("CROWD_ALERT_RULES", None)  # the demo chooses the sampled rules itself
    try:
        code = main(["demo", "--home", str(home), "--hours", HOURS, "--no-retention"])
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return home, code


def test_demo_week_has_a_quiet_thursday_before_the_gathering_friday():
    assert DEMO_START.weekday() == 0 and DEMO_DAYS == 5
    from crowd_platform.simulator.population import is_day_off

    days = [date.fromordinal(DEMO_START.toordinal() + n) for n in range(DEMO_DAYS)]
    assert not any(is_day_off(day) for day in days), "a holiday would leave the quiet day without a baseline"
    assert days[-2] == QUIET_DAY and days[-1] == GATHERING_DAY


# Runs the demo command (5 simulated days, ~16 Dagster runs): 4 min measured on 2 busy cores, so it
# is in the `slow` suite (make test-resilience); the date check above stays in the default suite.
@pytest.mark.slow
def test_demo_alerts_on_the_gathering_day_and_none_on_the_quiet_day(demo_home):
    home, code = demo_home
    assert code == 0
    connection = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        per_day = {row["day"]: row for row in alerts_by_day(connection, GATHERING_DAY)}
        istiqlal = connection.execute(
            "SELECT count(*) FROM crowd_alerts a JOIN districts d ON d.district_code = a.place_id AND d.level = a.level "
            "WHERE d.name IN ('Pasar Baru', 'Sawah Besar') AND a.opened_window >= TIMESTAMPTZ '2020-04-03 04:30:00+00'"
        ).fetchone()[0]
    finally:
        connection.close()
    # Thursday and Friday are evaluated (3 and 4 earlier days of bootstrap baseline), not Mon-Wed.
    assert set(per_day) == {QUIET_DAY, GATHERING_DAY}
    assert per_day[QUIET_DAY]["windows"] == per_day[GATHERING_DAY]["windows"] == 8
    assert per_day[QUIET_DAY]["alerts"] == 0, per_day[QUIET_DAY]
    assert per_day[GATHERING_DAY]["district_alerts"] >= 1
    # The Friday prayer's kelurahan (Pasar Baru) or kecamatan (Sawah Besar) alerts once it starts.
    assert istiqlal >= 1
