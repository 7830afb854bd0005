"""Governance: retention with deletion certificates, audit chain verification and witness."""

import dagster as dg

from crowd_platform.governance.assets import audit_log_checkpoint, retention
from crowd_platform.governance.checks import audit_chain_intact, certificates_verified
from crowd_platform.governance.schedules import (
    audit_checkpoint_job,
    daily_audit_checkpoint,
    daily_retention_schedule,
    retention_job,
)

defs = dg.Definitions(
    assets=[retention, audit_log_checkpoint],
    asset_checks=[certificates_verified, audit_chain_intact],
    schedules=[daily_retention_schedule, daily_audit_checkpoint],
    jobs=[retention_job, audit_checkpoint_job],
)
