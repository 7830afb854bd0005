"""Asset checks of governance: certificates all verified, audit chain (and sealed API audit files) intact."""



import dagster as dg

from crowd_platform.governance.audit_chain import verify_chain
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.warehouse import connect


@dg.asset_check(asset="retention", description="Every deletion certificate says 'verified'.", blocking=True)
def certificates_verified(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    with connect(crowd.settings.warehouse_path, read_only=True) as connection:
        total, failed = connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT starts_with(verification, 'verified')) FROM deletion_certificates"
        ).fetchone()
    return dg.AssetCheckResult(passed=failed == 0, metadata={"certificates": total, "not_verified": failed})


@dg.asset_check(asset="audit_log", description="The hash chain verifies against every witness checkpoint, and every "
                 "sealed API audit file still matches its seal.", blocking=True)
def audit_chain_intact(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    settings = crowd.settings
    with connect(settings.warehouse_path, read_only=True) as connection:
        result = verify_chain(connection, settings.witness, home=settings.home)
    return dg.AssetCheckResult(
        passed=result.ok,
        metadata={"records": result.records, "first_bad_seq": result.first_bad_seq or 0,
                  "reason": result.reason or "", "witness_checkpoints_matched": result.witness_checked,
                  "api_audit_files_verified": result.sealed_files},
    )
