"""Jobs that cut across domains: what one window, one day or a geography change recomputes.

A run of `window_job` for a window (or a range of windows) is the unit the landing sensor
requests: drops of that window -> validated -> published -> presence -> density -> alerts ->
broadcast requests. Assets are selected by key so this module imports no domain code.
"""

from datetime import timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg

from crowd_platform.common.partitions import DAY_KEY_FORMAT, daily_partitions, local_daily_partitions, window_partitions
from crowd_platform.common.settings import env, get_settings

settings = get_settings()


def job_executor(name: str | None) -> dg.ExecutorDefinition | None:
    """The executor of the computing jobs. Run config cannot switch a job's executor, so the
    deployment chooses it here (CROWD_EXECUTOR): None keeps Dagster's default (multiprocess on one
    host, or in-process from the CLI); ``k8s`` runs each step in its own pod (dagster-k8s, installed
    in the Kubernetes image; its run config is deploy/k8s/executor.yaml)."""
    if not name:
        return None
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"CROWD_EXECUTOR={name!r}: unknown executor (unset, or k8s)")


EXECUTOR = job_executor(env("CROWD_EXECUTOR"))

WINDOW_ASSETS = (
    "operator_drops",
    "staged_events",
    "bts_presence",
    "district_density",
    "crowd_alerts",
    "broadcast_requests",
)
GEOGRAPHY_ASSETS = (
    "operator_drops",
    "staged_events",
    "districts",
    "bts_registry",
    "bts_coverage",
    "bts_district_weights",
)
DAILY_ASSETS = ("density_baseline",)
# Per LOCAL day (their own partitions: a job has one partitions definition): the daily presence
# roll-up and the mobility indicators.
LOCAL_DAY_ASSETS = (
    "district_presence_daily",
    "subscriber_daily_location",
    "district_unique_subscribers",
    "district_daily_location",
    "district_od_flows",
)

window_job = dg.define_asset_job(
    "window_job",
    executor_def=EXECUTOR,
    selection=dg.AssetSelection.assets(*WINDOW_ASSETS),
    partitions_def=window_partitions,
    description="Everything one 15-minute window (or a range) needs, from its drops to broadcast requests.",
)

geography_job = dg.define_asset_job(
    "geography_job",
    executor_def=EXECUTOR,
    selection=dg.AssetSelection.assets(*GEOGRAPHY_ASSETS),
    partitions_def=window_partitions,
    description="Cell-list drops of a window, then the registry, coverage and district weights.",
)

daily_job = dg.define_asset_job(
    "daily_job",
    executor_def=EXECUTOR,
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    partitions_def=daily_partitions,
    description="The baseline of a UTC day, from the weeks before it.",
)



@dg.schedule(
    job=daily_job,
    cron_schedule="5 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Each day at 00:05 UTC: the baseline used for the new UTC day.",
)
def daily_baseline_schedule(context: dg.ScheduleEvaluationContext):
    today = context.scheduled_execution_time.astimezone(timezone.utc)
    day_key = today.strftime(DAY_KEY_FORMAT)
    if day_key not in daily_partitions.get_partition_keys(current_time=today + timedelta(days=1)):
        return  # outside the emergency period: nothing to compute
    yield dg.RunRequest(
        run_key=f"baseline-{day_key}",
        partition_key=day_key,
        asset_selection=[dg.AssetKey("density_baseline")],
        tags={"crowd/purpose": settings.purpose, "crowd/actor": "schedule:daily_baseline_schedule"},
    )


indicators_job = dg.define_asset_job(
    "indicators_job",
    executor_def=EXECUTOR,
    selection=dg.AssetSelection.assets(*LOCAL_DAY_ASSETS),
    partitions_def=local_daily_partitions,
    description="What is computed per local day (density.local_timezone) once it is over: the daily presence "
                "roll-up and the mobility indicators (daily locations, unique subscribers, flows, and their "
                "k-anonymised publications).",
)

INDICATORS_LOCAL_HOUR = 6  # local time the previous local day is computed (late drops have arrived)


@dg.schedule(
    job=indicators_job,
    cron_schedule=f"0 {INDICATORS_LOCAL_HOUR} * * *",
    execution_timezone=settings.config.density.local_timezone,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Each day at 06:00 local time: the daily presence and mobility indicators of the previous local day.",
)
def indicators_schedule(context: dg.ScheduleEvaluationContext):
    local_now = context.scheduled_execution_time.astimezone(ZoneInfo(settings.config.density.local_timezone))
    day_key = (local_now - timedelta(days=1)).strftime(DAY_KEY_FORMAT)
    if day_key not in local_daily_partitions.get_partition_keys(current_time=local_now + timedelta(days=1)):
        return  # outside the emergency period: nothing to compute
    yield dg.RunRequest(
        run_key=f"indicators-{day_key}",
        partition_key=day_key,
        tags={"crowd/purpose": settings.purpose, "crowd/actor": "schedule:indicators_schedule"},
    )


defs = dg.Definitions(jobs=[window_job, geography_job, daily_job, indicators_job],
                      schedules=[daily_baseline_schedule, indicators_schedule])
