"""Daily retention at 02:00 UTC and the daily audit checkpoint after it, running by default."""

from __future__ import annotations

import dagster as dg

retention_job = dg.define_asset_job("retention_job", selection=dg.AssetSelection.assets("retention"),
                                    description="Daily retention with deletion certificates.")
audit_checkpoint_job = dg.define_asset_job("audit_checkpoint_job", selection=dg.AssetSelection.assets("audit_log"),
                                           description="Verify the audit chain and export a witness checkpoint.")

daily_retention_schedule = dg.ScheduleDefinition(
    name="daily_retention_schedule",
    job=retention_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

# After retention (which appends records), so the checkpoint covers that day's deletions.
daily_audit_checkpoint = dg.ScheduleDefinition(
    name="daily_audit_checkpoint",
    job=audit_checkpoint_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
