"""Checks on crowd_alerts and broadcast_requests (whole tables / outbox: cheap, small)."""

from __future__ import annotations

import json
import re

import dagster as dg

from crowd_platform.alerts.assets import broadcast_requests, crowd_alerts
from crowd_platform.publication.kanon import publishable
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.ingestion.checks import MSISDN_BODY

# A pseudonymized subscriber key (64 hex) or an Indonesian MSISDN must never be in a request.
SUBSCRIBER_LIKE = re.compile(rf"\b[0-9a-f]{{64}}\b|(?<![0-9]){MSISDN_BODY}(?![0-9])")


@dg.asset_check(asset=crowd_alerts, description="Every alert that is not retracted has its opened transition, "
                "every alert full evidence and provenance, and a place has at most one open alert.")
def crowd_alerts_consistent(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    with crowd.warehouse(read_only=True) as con:
        missing_opened = con.execute(
            "SELECT count(*) FROM crowd_alerts a WHERE state <> 'retracted' AND NOT EXISTS (SELECT 1 FROM "
            "alert_transitions t WHERE t.alert_id = a.alert_id AND t.transition = 'opened')").fetchone()[0]
        missing_evidence = con.execute(
            "SELECT count(*) FROM crowd_alerts WHERE observed IS NULL OR baseline_median IS NULL OR ratio IS NULL "
            "OR robust_z IS NULL OR code_version IS NULL OR run_id IS NULL").fetchone()[0]
        double_open = con.execute(
            "SELECT count(*) FROM (SELECT level, place_id FROM crowd_alerts WHERE state IN ('open', 'escalated') "
            "GROUP BY level, place_id HAVING count(*) > 1)").fetchone()[0]
        alerts = con.execute("SELECT count(*) FROM crowd_alerts").fetchone()[0]
    return dg.AssetCheckResult(
        passed=missing_opened == 0 and missing_evidence == 0 and double_open == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"alerts": alerts, "without_opened_transition": missing_opened,
                  "without_evidence": missing_evidence, "places_with_two_open_alerts": double_open},
    )


@dg.asset_check(asset=crowd_alerts, blocking=True, description="The alert publication (crowd_alerts_published, "
                "alert_transitions_published) shows no count at or below k, no site count, and for every place and "
                "window exactly what district_density_published shows (a value hidden there is hidden here).")
def alerts_published_k_anonymous(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    from crowd_platform.publication.alerts import check_alert_publication

    with crowd.warehouse(read_only=True) as con:
        found = check_alert_publication(con, crowd.settings.k_anonymity)
    violations = found["at_or_below_k"] + found["differs_from_density"] + found["site_counts"]
    return dg.AssetCheckResult(passed=violations == 0, severity=dg.AssetCheckSeverity.ERROR, metadata=found)


@dg.asset_check(asset=broadcast_requests, blocking=True, description="Outbox files hold no subscriber-like value "
                "and no count at or below k; every recorded request has its file.")
def broadcast_outbox_private(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    settings = crowd.settings
    k = settings.k_anonymity
    leaking, small_counts, files = 0, 0, 0
    for path in sorted(settings.outbox.glob("*/*.json")):
        files += 1
        text = path.read_text(encoding="utf-8")
        if SUBSCRIBER_LIKE.search(text):
            leaking += 1
        value = (json.loads(text).get("crowd_estimate") or {}).get("value")
        if value is not None and not publishable(value, k):
            small_counts += 1
    with crowd.warehouse(read_only=True) as con:
        paths = [row[0] for row in con.execute("SELECT outbox_path FROM broadcast_requests").fetchall()]
    missing = sum(1 for path in paths if not path or not settings.resolve(path).exists())
    return dg.AssetCheckResult(
        passed=leaking == 0 and small_counts == 0 and missing == 0,
        metadata={"outbox_files": files, "files_with_subscriber_like_values": leaking,
                  "counts_at_or_below_k": small_counts, "requests_without_file": missing},
    )


@dg.asset_check(asset=broadcast_requests, description="Every operator that was sent a request for an alert that was "
                "later retracted has been sent its cancellation.")
def retractions_cancelled(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    from crowd_platform.common.warehouse import read_sql

    with crowd.warehouse(read_only=True) as con:
        owed = con.execute(f"SELECT count(*) FROM ({read_sql('alerts/broadcast_requests_cancellations')})").fetchone()[0]
        retracted = con.execute("SELECT count(*) FROM crowd_alerts WHERE state = 'retracted'").fetchone()[0]
        sent = con.execute("SELECT count(*) FROM broadcast_requests WHERE transition = 'retracted'").fetchone()[0]
    return dg.AssetCheckResult(passed=owed == 0, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"retracted_alerts": retracted, "cancellations_sent": sent,
                                         "cancellations_owed": owed})
