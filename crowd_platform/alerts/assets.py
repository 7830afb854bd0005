"""crowd_alerts (anomaly state machine per place) and broadcast_requests (per-operator outbox)."""


from typing import Any

import dagster as dg

from crowd_platform.alerts.engine import evaluate_range
from crowd_platform.alerts.rules import rules_from_settings
from crowd_platform.alerts.broadcast import deliver_pending, record_deliveries, record_requests
from crowd_platform.alerts.delivery import http_targets
from crowd_platform.common.partitions import window_asset, window_bounds
from crowd_platform.common.provenance import code_version
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.asset_metadata import table_metadata
from crowd_platform.geography import maps
from crowd_platform.publication.alerts import publish_alerts



@window_asset(
    deps=["district_density", "bts_presence", "density_baseline"],
    kinds={"duckdb", "python"},
    description=(
        "Crowd alerts per site and district level: robust z, ratio and excess against the place's "
        "baseline (config/alert_rules.yaml), opened after consecutive windows, escalated by severity band, "
        "closed with hysteresis, then a cooldown. Windows are processed in order from the stored state "
        "of the window before the range, and every later window already evaluated is evaluated again "
        "(late data carries forward); an alert that no longer holds is retracted. A window is evaluated "
        "only when complete, or past the operators' latency with alerts.min_market_share reporting."
    ),
)
def crowd_alerts(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    rules = rules_from_settings(settings)
    start, end = window_bounds(context)
    with crowd.warehouse() as con:
        summary = evaluate_range(con, settings, rules, start, end, run_id=context.run_id, code_version=code_version())
        summary.update(publish_alerts(con))
        open_alerts = con.execute("SELECT count(*) FROM crowd_alerts WHERE state IN ('open', 'escalated')").fetchone()[0]
        table = table_metadata(con, "crowd_alerts", window=(start, end), time_column="last_window", lineage={
            "observed": [("district_density", "people_estimate"), ("bts_presence", "subscribers")],
            "baseline_median": [("density_baseline", "median")],
            "baseline_mad": [("density_baseline", "mad")],
            "drop_ids": [("district_density", "drop_ids")],
        })
        alert_map = _alert_map_metadata(context, crowd, con, start, end)
    if summary["windows_not_evaluated"]:
        by_reason = ", ".join(f"{count} {reason}" for reason, count in sorted(summary["windows_not_evaluated_by_reason"].items()))
        context.log.warning(f"{summary['windows_not_evaluated']} of {summary['windows']} windows not evaluated: {by_reason}")
    if summary["alerts_retracted"]:
        context.log.warning(f"{summary['alerts_retracted']} alert(s) retracted: they no longer hold after new data")
    metadata: dict[str, Any] = {key: value for key, value in summary.items()
                                if key not in ("skipped_windows", "windows_not_evaluated_by_reason")}
    metadata["windows_not_evaluated_by_reason"] = dg.MetadataValue.json(summary["windows_not_evaluated_by_reason"])
    metadata["not_evaluated_windows"] = dg.MetadataValue.json(summary["skipped_windows"])
    metadata["open_alerts_total"] = open_alerts
    metadata["rules"] = dg.MetadataValue.json(rules.as_dict())
    metadata["code_version"] = code_version()
    metadata.update(table)
    metadata.update(alert_map)
    return dg.MaterializeResult(metadata=metadata)


def _alert_map_metadata(context: dg.AssetExecutionContext, crowd: CrowdPlatform, con: Any,
                        start: Any, end: Any) -> dict[str, Any]:
    """One map per step: the places of the alerts (crowd_alerts_published) open at some time in the
    range, outlined over the published density of the range's last window. Never fails the step."""
    try:
        markdown, summary = maps.range_map_markdown(con, crowd.settings, start, end, alt="crowd alert map",
                                                    alerts_of_range=True)
    except Exception as error:  # noqa: BLE001 - alerts are written; the picture is optional
        context.log.warning(f"alert map not drawn: {type(error).__name__}: {error}")
        return {"alert_map": dg.MetadataValue.md(f"_alert map not drawn: {type(error).__name__}_")}
    return {"alert_map": dg.MetadataValue.md(markdown), "alert_map_summary": dg.MetadataValue.json(summary)}


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
    with crowd.warehouse() as con:
        recorded = record_requests(con, settings, start, end, context.run_id)
    results = deliver_pending(recorded, http_targets(settings), context.log.info)
    if results:
        with crowd.warehouse() as con:
            record_deliveries(con, settings, results, context.run_id)
    failed = [request_id for request_id, result in results.items() if not result.delivered]
    built, created = recorded.built, recorded.created
    metadata = {
        "requests_in_range": len(built),
        "requests_created": created,
        "outbox_files_written": recorded.files_written,
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
