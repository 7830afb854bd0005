"""crowd_alerts (anomaly state machine per place) and broadcast_requests (per-operator outbox)."""


from datetime import datetime, timezone
from typing import Any

import dagster as dg

from crowd_platform.common import audit
from crowd_platform.alerts.engine import evaluate_range
from crowd_platform.alerts.rules import SITE_LEVEL, rules_from_settings
from crowd_platform.alerts.delivery import (
    DeliveryResult, http_targets, load_templates, post_with_retries, render_messages, request_id_for, write_outbox_file,
)
from crowd_platform.publication.kanon import publishable
from crowd_platform.common.partitions import window_asset, window_bounds
from crowd_platform.common.provenance import code_version
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.warehouse import fetch_dicts, read_sql, transaction
from crowd_platform.common.asset_metadata import table_metadata
from crowd_platform.common.crashpoints import crash_point



@window_asset(
    deps=["district_density", "bts_presence", "density_baseline"],
    kinds={"duckdb", "python"},
    description=(
        "Crowd alerts per site and district level: robust z, ratio and excess against the place's "
        "baseline (config/alert_rules.yaml), opened after consecutive windows, escalated by severity band, "
        "closed with hysteresis, then a cooldown. Windows are processed in order from the stored state "
        "of the window before the range; transitions in alert_transitions and audit_log."
    ),
)
def crowd_alerts(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    rules = rules_from_settings(settings)
    start, end = window_bounds(context)
    with crowd.warehouse() as con:
        summary = evaluate_range(con, settings, rules, start, end, run_id=context.run_id, code_version=code_version())
        open_alerts = con.execute("SELECT count(*) FROM crowd_alerts WHERE state <> 'closed'").fetchone()[0]
        table = table_metadata(con, "crowd_alerts", window=(start, end), time_column="last_window", lineage={
            "observed": [("district_density", "people_estimate"), ("bts_presence", "subscribers")],
            "baseline_median": [("density_baseline", "median")],
            "baseline_mad": [("density_baseline", "mad")],
            "drop_ids": [("district_density", "drop_ids")],
        })
    if summary["windows_skipped_no_baseline"]:
        context.log.warning(
            f"{summary['windows_skipped_no_baseline']} of {summary['windows']} windows not evaluated: "
            "no density_baseline for their day")
    if summary["later_windows_already_evaluated"]:
        context.log.warning(
            f"{summary['later_windows_already_evaluated']} later windows were evaluated from the state before this "
            "rerun; rerun them to carry any change forward")
    metadata: dict[str, Any] = {key: value for key, value in summary.items() if key != "skipped_windows"}
    metadata["skipped_windows_no_baseline"] = dg.MetadataValue.json(summary["skipped_windows"])
    metadata["open_alerts_total"] = open_alerts
    metadata["rules"] = dg.MetadataValue.json(rules.as_dict())
    metadata["code_version"] = code_version()
    metadata.update(table)
    return dg.MaterializeResult(metadata=metadata)


def _cells_for(con, level: str, place_id: str, at: datetime, radius_m: float) -> list[tuple[str, list[str]]]:
    if level == SITE_LEVEL:
        rows = con.execute(read_sql("alerts/broadcast_requests_site_cells"),
                           {"site_id": place_id, "at": at, "radius_m": radius_m}).fetchall()
    else:
        rows = con.execute(read_sql("alerts/broadcast_requests_district_cells"),
                           {"level": level, "district_code": place_id, "at": at}).fetchall()
    return [(operator, list(cell_ids)) for operator, cell_ids in rows if cell_ids]


def build_requests(con, settings, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """One request per (opened/escalated transition in [start, end), operator with covering cells)."""
    templates = load_templates(settings)
    radius_m = float(templates.get("site_neighbour_radius_m", 500))
    k = settings.k_anonymity
    requests_out = []
    for row in fetch_dicts(con, read_sql("alerts/broadcast_requests_transitions"), {"start": start, "end": end}):
        window_start = row["window_start"].astimezone(timezone.utc)
        messages = render_messages(templates, row["transition"], row["level"], row["place_name"] or row["place_id"],
                                   row["place_id"], int(row["severity"]))
        observed = row["observed"]
        # Only a k-anonymous count leaves the platform (DESIGN.md 4.3); otherwise null.
        shown = int(round(observed)) if publishable(observed, k) else None
        for operator, cell_ids in _cells_for(con, row["level"], row["place_id"], window_start, radius_m):
            request_id = request_id_for(row["alert_id"], row["transition"], window_start, operator)
            requests_out.append({
                "request_id": request_id,
                "alert_id": row["alert_id"],
                "transition": row["transition"],
                "window_start": window_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "operator": operator,
                "level": row["level"],
                "place_id": row["place_id"],
                "place_name": row["place_name"],
                "severity": int(row["severity"]),
                "cell_ids": cell_ids,
                "crowd_estimate": {"value": shown, "unit": "subscribers" if row["level"] == SITE_LEVEL else "people",
                                   "suppressed_at_or_below_k": shown is None},
                "message": {"id": messages["id"], "en": messages["en"]},
                "purpose": settings.purpose,
            })
    return requests_out


@window_asset(
    deps=["crowd_alerts", "bts_district_weights", "bts_registry"],
    kinds={"duckdb", "python"},
    description=(
        "Per-operator broadcast requests for opened/escalated alerts: the operator's cells covering the "
        "alert area and the message in Bahasa Indonesia and English. Idempotent request_id; written to "
        "outbox/<operator>/<request_id>.json once, and POSTed with retries and an Idempotency-Key when "
        "broadcast.http configures the operator."
    ),
)
def broadcast_requests(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    start, end = window_bounds(context)
    now = datetime.now(timezone.utc)
    targets = http_targets(settings)

    # 1. Record new requests and outbox files in one short transaction (no network inside it).
    with crowd.warehouse() as con:
        built = build_requests(con, settings, start, end)
        ids = [request["request_id"] for request in built]
        existing = {row["request_id"]: row for row in fetch_dicts(
            con, "SELECT request_id, delivered_at, attempts FROM broadcast_requests WHERE list_contains(?, request_id)",
            [ids])} if ids else {}
        created, files_written = 0, 0
        with transaction(con):
            for request in built:
                path = settings.outbox / request["operator"] / f"{request['request_id']}.json"
                if write_outbox_file(path, request):
                    files_written += 1
                    crash_point("broadcast_written")
                if request["request_id"] in existing:
                    continue
                con.execute(
                    "INSERT INTO broadcast_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, NULL, ?)",
                    [request["request_id"], request["alert_id"], request["transition"], request["operator"],
                     request["cell_ids"], request["message"]["id"], request["message"]["en"], now, str(path),
                     context.run_id])
                audit.append(con, "broadcast_requested", purpose=settings.purpose, object_kind="broadcast_request",
                             object_id=request["request_id"], run_id=context.run_id,
                             details={"alert_id": request["alert_id"], "transition": request["transition"],
                                      "operator": request["operator"], "cells": len(request["cell_ids"])})
                created += 1

    # 2. HTTP outside any warehouse connection: only requests not yet delivered.
    pending = [request for request in built
               if request["operator"] in targets and not (existing.get(request["request_id"]) or {}).get("delivered_at")]
    results: dict[str, DeliveryResult] = {}
    for request in pending:
        result = post_with_retries(targets[request["operator"]], request, request["request_id"])
        results[request["request_id"]] = result
        context.log.info(f"broadcast {request['request_id']} to {request['operator']}: "
                         f"status {result.http_status} after {result.attempts} attempt(s)")

    # 3. Record the outcome.
    failed = [request_id for request_id, result in results.items() if not result.delivered]
    if results:
        with crowd.warehouse() as con:
            with transaction(con):
                for request_id, result in results.items():
                    con.execute("UPDATE broadcast_requests SET http_status = ?, attempts = coalesce(attempts, 0) + ?, "
                                "delivered_at = ? WHERE request_id = ?",
                                [result.http_status, result.attempts, result.delivered_at, request_id])
                    audit.append(con, "broadcast_delivered" if result.delivered else "broadcast_delivery_failed",
                                 purpose=settings.purpose, object_kind="broadcast_request", object_id=request_id,
                                 run_id=context.run_id,
                                 details={"http_status": result.http_status, "attempts": result.attempts})
    metadata = {
        "requests_in_range": len(built),
        "requests_created": created,
        "outbox_files_written": files_written,
        "already_recorded": len(built) - created,
        "http_attempted": len(results),
        "http_delivered": len(results) - len(failed),
        "http_failed": len(failed),
        "operators": dg.MetadataValue.json(sorted({request["operator"] for request in built})),
        "dagster/column_lineage": dg.TableColumnLineage(deps_by_column={
            "cell_ids": [dg.TableColumnDep(asset_key=dg.AssetKey("bts_registry"), column_name="cell_id"),
                         dg.TableColumnDep(asset_key=dg.AssetKey("bts_district_weights"), column_name="weight")],
            "alert_id": [dg.TableColumnDep(asset_key=dg.AssetKey("crowd_alerts"), column_name="alert_id")],
        }),
    }
    if failed:
        # Recorded above; failing the step makes it visible and a retry resends only these.
        raise dg.Failure(description=f"{len(failed)} broadcast request(s) not delivered after retries",
                         metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)
