"""Governance assets: daily retention with certificates, and the daily audit checkpoint (which
also seals the API audit files of past days into the chain)."""



from datetime import datetime

import dagster as dg

from crowd_platform.governance.api_audit import seal_closed_files
from crowd_platform.governance.audit_chain import record_checkpoint, verify_chain, with_sealed_files
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.governance.retention import apply_retention, outcome_summary
from crowd_platform.common.warehouse import WAREHOUSE_POOL, connect
from crowd_platform.common.timeutil import parse_utc_or_none



class RetentionConfig(dg.Config):
    """``as_of`` empty means now; set it to replay retention at a simulated time (demo, tests)."""

    as_of: str = ""
    dry_run: bool = False


def _parse_time(value: str) -> datetime | None:
    return parse_utc_or_none(value, what="as_of")


def run_actor(context: dg.AssetExecutionContext, default: str) -> str:
    """Who the run acts for: its ``crowd/actor`` tag (CLI, demo, a launch from the UI with the tag),
    else the schedule that started it (``dagster:<schedule>``), else ``default``."""
    tags = context.run.tags
    if tags.get("crowd/actor"):
        return tags["crowd/actor"]
    schedule = tags.get("dagster/schedule_name")
    return f"dagster:{schedule}" if schedule else default


@dg.asset(
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    description=(
        "Deletes raw drops, lake partitions, quarantine, staging leftovers and warehouse rows past the "
        "retention declared in the data contracts, rebuilds the DuckDB file so no deleted bytes remain, "
        "and writes one deletion certificate per object (NIST SP 800-88 Rev.1 style)."
    ),
    deps=["operator_drops", "staged_events", "bts_presence", "district_density", "crowd_alerts"],
)
def retention(context: dg.AssetExecutionContext, config: RetentionConfig, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    outcome = apply_retention(
        settings,
        _parse_time(config.as_of),
        dry_run=config.dry_run,
        actor=run_actor(context, "dagster:manual"),
        purpose=context.run.tags.get("crowd/purpose") or settings.purpose,
        run_id=context.run_id,
        progress=context.log.info,
    )
    summary = outcome_summary(outcome)  # counts only: nothing subscriber-level in metadata
    if outcome.failed:
        raise dg.Failure(description=f"{len(outcome.failed)} deletion(s) failed verification", metadata=summary)
    return dg.MaterializeResult(metadata={
        "objects_deleted": summary["objects"],
        "rows_deleted": summary["rows"],
        "bytes_deleted": summary["bytes"],
        "drops_marked_deleted": summary["drops_marked_deleted"],
        "by_kind": dg.MetadataValue.json(summary["by_kind"]),
        "compaction": dg.MetadataValue.json(summary["compaction"] or {}),
        "dry_run": config.dry_run,
        "as_of": summary["as_of"],
    })


@dg.asset(
    name="audit_log",
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    description=(
        "Seals every closed API audit file (api_audit/, days before today) into the hash chain, verifies "
        "the hash-chained audit log (and every earlier witness checkpoint), exports today's checkpoint "
        "(date, last seq, last record_hash, count) to witness/<date>.json and the append-only "
        "witness/checkpoints.jsonl, to be published outside the platform, then re-hashes every sealed "
        "API audit file."
    ),
)
def audit_log_checkpoint(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    purpose = context.run.tags.get("crowd/purpose") or settings.purpose
    actor = run_actor(context, "dagster:audit_log")
    with connect(settings.warehouse_path) as connection:
        # Seal first, so today's checkpoint vouches for the seal records too.
        sealed = seal_closed_files(connection, settings.home, purpose=purpose, actor=actor, run_id=context.run_id)
        result = verify_chain(connection, settings.witness)
        if not result.ok:
            raise dg.Failure(description=f"audit chain broken: {result.summary()}",
                             metadata={"first_bad_seq": result.first_bad_seq, "reason": result.reason})
        checkpoint = record_checkpoint(connection, settings.witness, result, purpose=purpose, actor=actor,
                                       run_id=context.run_id)
        # A sealed file that no longer matches fails the asset, after the checkpoint: the witness
        # keeps vouching for the chain, whose seal records are the evidence.
        files = with_sealed_files(result, connection, settings.home)
        if not files.ok:
            raise dg.Failure(description=f"sealed API audit file(s) fail verification: {files.summary()}",
                             metadata={"first_bad_seq": files.first_bad_seq, "reason": files.reason})
    if sealed.unreadable:
        context.log.warning(f"{len(sealed.unreadable)} closed API audit file(s) could not be read and stay unsealed: "
                            + ", ".join(sealed.unreadable))
    return dg.MaterializeResult(metadata={
        "records": result.records,
        "last_seq": checkpoint["last_seq"],
        "last_record_hash": checkpoint["last_record_hash"],
        "witness_checkpoints_matched": result.witness_checked,
        "witness_file": dg.MetadataValue.path(str(settings.witness / f"{checkpoint['date']}.json")),
        "api_audit_sealed": dg.MetadataValue.json(sealed.summary()),  # counts only
        "api_audit_files_verified": files.sealed_files,
    })
