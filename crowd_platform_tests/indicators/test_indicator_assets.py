"""The indicator assets through a real Dagster materialize on local-day partitions, the blocking
k-anonymity checks, reruns that replace their day, no subscriber value in logs or audit details,
and retention that deletes the per-subscriber table."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from crowd_platform.common.partitions import local_daily_partitions
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.governance.retention.plan import plan_tables
from crowd_platform.governance.retention.policy import load_policy
from crowd_platform.indicators.assets import INDICATOR_ASSETS
from crowd_platform.indicators.checks import INDICATOR_CHECKS
from crowd_platform_tests.indicators.area import DAY, PREVIOUS, Lake, build_geography, key, wib


def _home(tmp_path: Path) -> Path:
    settings = get_settings(tmp_path)
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        build_geography(con)
        lake = Lake(tmp_path, con)
        # 20 people L1 -> L3 between the days, and within DAY from L1 (morning) to L2 (evening); 2 stay put.
        lake.add("telkomsel", [(f"P{i}", "c1", wib(PREVIOUS, 12)) for i in range(22)], key_id="tsel-w11")
        lake.add("telkomsel", [(f"P{i}", "c1", wib(DAY, 8)) for i in range(22)]
                 + [(f"P{i}", "c2", wib(DAY, 18)) for i in range(20)]
                 + [(f"P{i}", "c3", wib(DAY, 21)) for i in range(20)]
                 + [(f"P{i}", "c1", wib(DAY, 21)) for i in range(20, 22)], key_id="tsel-w11")
    return tmp_path


def test_local_day_partitions_are_local_midnights():
    window = local_daily_partitions.time_window_for_partition_key(DAY.isoformat())
    assert window.start.astimezone(timezone.utc) == datetime(2020, 3, 9, 17, tzinfo=timezone.utc)
    assert window.end.astimezone(timezone.utc) == datetime(2020, 3, 10, 17, tzinfo=timezone.utc)


def test_materialize_checks_rerun_and_privacy(tmp_path: Path):
    home = _home(tmp_path)
    resources = {"crowd": CrowdPlatform(home=str(home))}
    with dg.instance_for_test() as instance:
        dg.materialize([INDICATOR_ASSETS[0]], resources=resources, instance=instance, partition_key=PREVIOUS.isoformat())
        for _ in range(2):  # the second run replaces its day
            result = dg.materialize([*INDICATOR_ASSETS, *INDICATOR_CHECKS], resources=resources, instance=instance,
                                    partition_key=DAY.isoformat())
            assert result.success
            checks = {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}
            assert checks == {check: True for check in (
                "district_unique_subscribers_published_k_anonymous", "district_daily_location_published_k_anonymous",
                "district_od_flows_published_k_anonymous")}
        logs = " ".join(str(record.dagster_event) for record in instance.all_logs(result.run_id))
    settings = get_settings(home)
    with connect(settings.warehouse_path) as con:
        flows = dict(((kind, o, d), n) for kind, o, d, n in con.execute(
            "SELECT flow_kind, origin_code, destination_code, subscribers FROM district_od_flows_published "
            "WHERE total IS NULL AND NOT suppressed").fetchall())
        assert flows == {("morning_evening", "L1", "L2"): 20}
        # Consecutive days: L1 -> L3 20 and L1 -> L1 2 (primary) under an origin total of 22: the 2
        # would be 22 - 20, so kanon hides the smallest shown flow of the row, L1 -> L3, too.
        row = dict(((d, t), (n, kind)) for d, t, n, kind in con.execute(
            "SELECT destination_code, total, subscribers, suppression FROM district_od_flows_published "
            "WHERE flow_kind = 'consecutive_days' AND origin_code = 'L1'").fetchall())
        assert row == {("L1", None): (None, "primary"), ("L3", None): (None, "complementary"),
                       (None, "origin"): (22, None)}
        assert con.execute("SELECT count(*) FROM district_daily_location WHERE day = ?", [DAY]).fetchall()[0][0] == 12
        subscribers = con.execute("SELECT count(*) FROM subscriber_daily_location WHERE day = ? AND period = 'day' "
                                  "AND rule = 'last'", [DAY]).fetchall()[0][0]
        assert subscribers == 22
        actions = [row[0] for row in con.execute("SELECT action FROM audit_log").fetchall()]
        assert actions.count("district_od_flows.materialize") == 2
        details = " ".join(row[0] for row in con.execute("SELECT details FROM audit_log").fetchall())
        hashes = [str(row[0]) for row in con.execute("SELECT DISTINCT subscriber FROM subscriber_daily_location").fetchall()]
        # Retention: the per-subscriber rows expire 3 days after their day, the aggregates later.
        planned = plan_tables(con, settings, load_policy(settings), datetime(2020, 3, 14, tzinfo=timezone.utc),
                              sunset=False, keep_aggregates=False)
        assert {d.table for d in planned} == {"subscriber_daily_location"}
        assert sum(d.rows for d in planned) == con.execute("SELECT count(*) FROM subscriber_daily_location").fetchall()[0][0]
        sunset = plan_tables(con, settings, load_policy(settings), datetime(2020, 3, 14, tzinfo=timezone.utc),
                             sunset=True, keep_aggregates=True)
        assert "subscriber_daily_location" in {d.table for d in sunset}
        assert "district_od_flows_published" not in {d.table for d in sunset}
    for text in (details, logs):
        assert key("telkomsel-P0") not in text
        assert not any(value in text for value in hashes)


def test_schedule_asks_for_the_previous_local_day():
    from crowd_platform.definitions import defs
    from crowd_platform.jobs import indicators_schedule

    repo = defs.get_repository_def()
    # 06:00 WIB on 11 March is 23:00 UTC on 10 March: the local day 10 March is complete.
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2020, 3, 10, 23, tzinfo=timezone.utc),
                                        repository_def=repo)
    assert [request.partition_key for request in indicators_schedule.evaluate_tick(context).run_requests] == ["2020-03-10"]
    outside = dg.build_schedule_context(scheduled_execution_time=datetime(2021, 3, 10, 23, tzinfo=timezone.utc),
                                        repository_def=repo)
    assert indicators_schedule.evaluate_tick(outside).run_requests == []
