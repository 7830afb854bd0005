"""Ingestion assets: ``operator_drops`` (write + audit) and ``staged_events`` (publish).

Write-audit-publish: operator_drops copies every complete drop of its window range to raw/,
parses it into staging/ and validates every contract rule (failures go to quarantine/);
its blocking checks guard ``staged_events``, which moves the validated staging files to the
lake and supersedes earlier deliveries.
"""


import logging
from collections import Counter

import dagster as dg

from crowd_platform.ingestion.checks import CHECK_SPECS, evaluate_checks
from crowd_platform.common.asset_metadata import table_metadata
from crowd_platform.ingestion.landing import scan_landing
from crowd_platform.ingestion.drops import DropOutcome
from crowd_platform.ingestion.ingest import PendingDrop, gx_drops_per_run, gx_sample, ingest_drops
from crowd_platform.ingestion.publish import publish_window
from crowd_platform.ingestion.manifest import MANIFEST_SUFFIX
from crowd_platform.common.partitions import window_asset, window_bounds
from crowd_platform.common.resources import CrowdPlatform

log = logging.getLogger(__name__)


class OperatorDropsConfig(dg.Config):
    """Optional extra drops: landing-relative manifest paths ('<operator>/<file>.manifest.json')."""

    manifests: list[str] = []


def _outcome_table(outcomes: list[DropOutcome]) -> str:
    lines = ["| drop_id | operator | feed | status | reason |", "|---|---|---|---|---|"]
    # Problems first: a quarantined drop must be visible even in a day-long backfill.
    ordered = sorted(outcomes, key=lambda outcome: (outcome.status in ("validated", "accepted"), outcome.drop_id))
    for outcome in ordered[:100]:
        lines.append(f"| {outcome.drop_id} | {outcome.operator} | {outcome.feed} | {outcome.status} | {(outcome.reason or '').replace('|', '/')} |")
    return "\n".join(lines)


@window_asset(
    outside_pool=True,
    kinds={"duckdb", "parquet", "great_expectations"},
    check_specs=CHECK_SPECS,
    description="Operator drops of the window range: raw copy, manifest check, parse per contract, every contract rule "
                "(DuckDB + GX); failures quarantined with report.json. The WAP 'write' and 'audit' steps.",
)
def operator_drops(context: dg.AssetExecutionContext, crowd: CrowdPlatform, config: OperatorDropsConfig):
    settings = crowd.settings
    start, end = window_bounds(context)
    scan = scan_landing(settings.landing, settings.contracts_dir, window_minutes=settings.window_minutes, window_range=(start, end))
    drops = list(scan.routable)
    if config.manifests:
        # Drops named in run config are taken whatever their window (e.g. a release).
        wanted = {path.strip("/") for path in config.manifests}
        everything = scan_landing(settings.landing, settings.contracts_dir, window_minutes=settings.window_minutes)
        known = {(drop.operator_dir, drop.manifest_name) for drop in drops}
        drops += [drop for drop in everything.routable
                  if f"{drop.operator_dir}/{drop.manifest_name}" in wanted and (drop.operator_dir, drop.manifest_name) not in known]
    # Cells first: a cell list of the same run may make events' cells known.
    drops.sort(key=lambda drop: (drop.manifest.feed != "cells", drop.manifest.window_start, drop.operator_dir, drop.manifest.delivery))
    run_id = context.run.run_id
    cross_checked = gx_sample(len(drops), gx_drops_per_run(settings))
    pending = [PendingDrop(settings.landing / drop.operator_dir, drop.manifest_name, drop.manifest, index in cross_checked)
               for index, drop in enumerate(drops)]
    # The warehouse is opened for the writes only; parses and rules run in private engines
    # in between (ingest_drops), while other runs' steps may take the warehouse.
    results = ingest_drops(settings, crowd.warehouse_when_free, pending, run_id=run_id,
                           parse_workers=settings.config.ingestion.parse_workers)
    # Per drop: the "drops" table of the metadata, not a log line each.
    outcomes: list[DropOutcome] = [outcome for outcome in results if outcome is not None]
    vanished = len(results) - len(outcomes)
    if vanished:
        # Taken by a concurrent run (e.g. a release) between the scan and the ingest: not ours any more.
        context.log.info(f"{vanished} drop(s) left landing before this run received them; skipped")
    with crowd.warehouse_when_free() as con:
        check_results = evaluate_checks(settings, con, start, end)
        table = table_metadata(con, "drops", window=(start, end))
    statuses = Counter(outcome.status for outcome in outcomes)
    return dg.MaterializeResult(
        metadata={
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "drops_processed": len(outcomes),
            "gx_cross_checked": len(cross_checked),
            "validated": statuses.get("validated", 0),
            "quarantined": statuses.get("quarantined", 0),
            "duplicates": statuses.get("duplicate", 0),
            "rows_staged": sum(outcome.rows or 0 for outcome in outcomes if outcome.status == "validated"),
            "drops": dg.MetadataValue.md(_outcome_table(outcomes)) if outcomes else "none",
            **table,
        },
        check_results=check_results,
    )


@window_asset(
    deps=[operator_drops],
    kinds={"duckdb", "parquet"},
    description="Canonical events of accepted drops in lake/events/ (cells in lake/cells/): the WAP 'publish' of "
                "validated staging files; a higher delivery supersedes the earlier one.",
)
def staged_events(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    start, end = window_bounds(context)
    with crowd.warehouse() as con:
        outcomes = publish_window(settings, con, start, end, context.run.run_id)
        accepted = con.execute(
            "SELECT count(*), coalesce(sum(rows_loaded), 0) FROM drops WHERE status = 'accepted' AND coalesce(feed_kind, feed) = 'events' "
            "AND window_start >= ? AND window_start < ?", [start, end]).fetchone()
        table = table_metadata(con, "drops", window=(start, end), lineage={
            "lake_path": [("operator_drops", "drop_id")], "status": [("operator_drops", "status")]})
    return dg.MaterializeResult(
        metadata={
            "published": sum(1 for outcome in outcomes if outcome.status == "accepted"),
            "superseded_on_arrival": sum(1 for outcome in outcomes if outcome.status == "superseded"),
            "accepted_event_drops_in_range": int(accepted[0]),
            "accepted_event_rows_in_range": int(accepted[1]),
            **table,
        }
    )


ASSETS = [operator_drops, staged_events]
__all__ = ["ASSETS", "operator_drops", "staged_events", "MANIFEST_SUFFIX"]
