"""`make dev` on the demo's home runs the production schedules (RUNNING by default). None of them
may act on the simulated week at the wall clock: the computing schedules find today outside the
configured emergency period, retention skips a simulated home (tested in
governance/test_governance_runs.py). Only the audit checkpoint runs, and it deletes nothing."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from crowd_platform.common.settings import get_settings


def test_computing_schedules_request_nothing_outside_the_emergency_period():
    from crowd_platform.definitions import defs
    from crowd_platform.jobs import daily_baseline_schedule, indicators_schedule

    repo = defs.get_repository_def()
    settings = get_settings()
    now = datetime.now(timezone.utc)
    assert now > settings.emergency_end, "the shipped configuration's emergency period (the demo's) lies in the past"
    for schedule in (daily_baseline_schedule, indicators_schedule):
        tick = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=now, repository_def=repo))
        assert list(tick.run_requests or []) == [], schedule.name
    # Inside the period the same schedule does ask (the check above is not vacuous), at its cron
    # time: the new day's baseline, so the new day must already be a partition (it was not: every
    # tick failed with an unknown partition until daily_partitions got end_offset=1).
    tick = daily_baseline_schedule.evaluate_tick(dg.build_schedule_context(
        scheduled_execution_time=datetime(2020, 3, 11, 0, 5, tzinfo=timezone.utc), repository_def=repo))
    assert {(request.partition_key, request.asset_selection[0].to_user_string()) for request in tick.run_requests} == {
        ("2020-03-11", "density_baseline")}
    # The daily presence is per local day, with the indicators, after that day is over: at 06:00
    # WIB on 11 March, the local day 10 March (never a UTC day read as a local date).
    tick = indicators_schedule.evaluate_tick(dg.build_schedule_context(
        scheduled_execution_time=datetime(2020, 3, 10, 23, 0, tzinfo=timezone.utc), repository_def=repo))
    assert [request.partition_key for request in tick.run_requests] == ["2020-03-10"]
    assert "district_presence_daily" in {key.to_user_string() for key in
                                         defs.resolve_job_def("indicators_job").asset_layer.executable_asset_keys}
