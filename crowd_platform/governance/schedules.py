"""Daily retention at 02:00 UTC and the daily audit checkpoint after it, running by default."""

from __future__ import annotations

import dagster as dg

retention_job = dg.define_asset_job("retention_job", selection=dg.AssetSelection.assets("retention"),
                                    description="Daily retention with deletion certificates.")
audit_checkpoint_job = dg.define_asset_job("audit_checkpoint_job", selection=dg.AssetSelection.assets("audit_log"),
                                           description="Verify the audit chain and export a witness checkpoint.")

# The simulator writes this file into every storage root it fills (simulator.GROUND_TRUTH_FILE).
SIMULATED_MARKER = "ground_truth.json"


@dg.schedule(
    name="daily_retention_schedule",
    job=retention_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Each day at 02:00 UTC: retention as of now. Skipped on a storage root holding simulated data "
                "(the demo's): its days lie years back, so retention at the wall clock would delete all of it.",
)
def daily_retention_schedule(context: dg.ScheduleEvaluationContext):
    from crowd_platform.common.settings import get_settings

    home = get_settings().home
    if (home / SIMULATED_MARKER).exists():
        return dg.SkipReason(f"{home} holds simulated data ({SIMULATED_MARKER}): retention at the wall clock would "
                             "delete all of it; replay it with `crowd-platform retention --as-of ...` or "
                             "materialize `retention` with config as_of")
    return dg.RunRequest()

# After retention (which appends records), so the checkpoint covers that day's deletions.
daily_audit_checkpoint = dg.ScheduleDefinition(
    name="daily_audit_checkpoint",
    job=audit_checkpoint_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
