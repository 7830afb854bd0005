"""Lineage: from a crowd alert back to its windows, density rows, drops, checks, contract and
code versions, Dagster runs, and the certificates of the drops' deletion.

Reads only warehouse tables, so it works long after the drops themselves are gone. A trace
leaves the platform: every number in it comes from the publication (crowd_alerts_published,
alert_transitions_published, district_density_published), so it hides exactly what they hide
and no ratio, z or baseline is there to give a hidden value back (publication/alerts.py). From
the internal tables it reads identifiers only (drop ids, run ids).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb

from crowd_platform.common.text import escape_text
from crowd_platform.common.warehouse import fetch_dicts, read_sql

# deletion_certificates.object_id is the drop_id for these kinds (agreed with ingestion).
DROP_OBJECT_KINDS = ("raw_drop", "lake_partition", "quarantine", "staging", "landing")


class TraceError(LookupError):
    """The alert does not exist."""


def _iso(value: Any) -> Any:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else value


def drop_lineage(connection: duckdb.DuckDBPyConnection, drop_ids: list[str]) -> list[dict[str, Any]]:
    """Each drop behind an alert: its record, its rule verdicts (counts) and deletion certificates.
    A drop id with no drops row is listed as unknown rather than dropped from the trace."""
    if not drop_ids:
        return []
    params = {"drop_ids": drop_ids}
    drop_rows = fetch_dicts(connection, read_sql("governance/lineage_drops"), params)
    checks = fetch_dicts(connection, read_sql("governance/lineage_checks"), params)
    certificates = fetch_dicts(connection, read_sql("governance/lineage_certificates"),
                               {**params, "object_kinds": list(DROP_OBJECT_KINDS)})
    known = {row["drop_id"] for row in drop_rows}
    drops = []
    for row in drop_rows:
        own_checks = [c for c in checks if c["drop_id"] == row["drop_id"]]
        own_certs = [c for c in certificates if c["object_id"] == row["drop_id"]]
        drops.append({
            **{key: _iso(value) for key, value in row.items()},
            "checks": {"passed": sum(c["passed"] for c in own_checks),
                       "failed": sum(not c["passed"] for c in own_checks),
                       "failed_rules": [c["rule"] for c in own_checks if not c["passed"]]},
            "deleted": row["status"] == "deleted" or bool(own_certs),
            "certificates": [{key: _iso(value) for key, value in c.items() if key != "object_id"} for c in own_certs],
        })
    return drops + [{"drop_id": missing, "status": "unknown (no drops row)", "deleted": None, "certificates": []}
                    for missing in drop_ids if missing not in known]


def trace(connection: duckdb.DuckDBPyConnection, alert_id: str) -> dict[str, Any]:
    """Everything an auditor follows from an alert back to the exact drops: transitions, the
    density windows, the drops with their checks and deletion certificates, runs and versions."""
    connection.execute("SET TimeZone = 'UTC'")
    alerts = fetch_dicts(connection, "SELECT * FROM crowd_alerts_published WHERE alert_id = ?", [alert_id])
    if not alerts:
        raise TraceError(f"no alert {alert_id}")
    alert = alerts[0]
    transitions = fetch_dicts(
        connection,
        "SELECT window_start, transition, people_estimate, run_id FROM alert_transitions_published "
        "WHERE alert_id = ? ORDER BY window_start", [alert_id])
    last = alert.get("closed_window") or alert["last_window"]
    density = fetch_dicts(connection, read_sql("governance/lineage_density"),
                          {"level": alert["level"], "place_id": alert["place_id"], "first": alert["opened_window"], "last": last})
    drop_ids = sorted(set(alert.get("drop_ids") or []) | {d for row in density for d in (row["drop_ids"] or [])})
    drops = drop_lineage(connection, drop_ids)
    run_ids = sorted({r for r in [alert.get("run_id"), *(t["run_id"] for t in transitions),
                                  *(d["run_id"] for d in density), *(d.get("run_id") for d in drops)] if r})
    contract_versions = sorted(set(alert.get("contract_versions") or []) |
                               {f"{d['contract_id']}@{d['contract_version']}" for d in drops if d.get("contract_id")})
    return {
        "alert": {key: _iso(value) for key, value in alert.items() if key not in ("drop_ids", "contract_versions")},
        "transitions": [{key: _iso(value) for key, value in t.items()} for t in transitions],
        "windows": [_iso(row["window_start"]) for row in density],
        "density": [{"window_start": _iso(row["window_start"]), "people_estimate": row["people_estimate"],
                     "density_per_km2": row["density_per_km2"], "suppression": row["suppression"],
                     "completeness": row["completeness"], "drops": len(row["drop_ids"] or []),
                     "run_id": row["run_id"]} for row in density],
        "drops": drops,
        "contract_versions": contract_versions,
        "code_versions": sorted({v for v in [alert.get("code_version")] if v}),
        "run_ids": run_ids,
    }


def _shown(value: Any, suppression: str | None = None) -> str:
    return str(value) if value is not None else f"suppressed{f' ({suppression})' if suppression else ''}"


def format_trace(result: dict[str, Any]) -> str:
    alert = result["alert"]
    lines = [
        f"alert {alert['alert_id']}: {alert['level']} {alert['place_id']} ({alert.get('place_name') or ''}) "
        f"state={alert['state']} severity={alert['severity']}",
        f"  windows {alert['opened_window']} .. {alert.get('closed_window') or alert['last_window']}; "
        f"people (last window, as published)={_shown(alert['people_estimate'])}",
        f"  code version(s): {', '.join(result['code_versions']) or '-'}",
        f"  contract version(s): {', '.join(result['contract_versions']) or '-'}",
        f"  Dagster run(s): {', '.join(result['run_ids']) or '-'}",
        "transitions:",
    ]
    lines += [f"  {t['window_start']} {t['transition']} people={_shown(t['people_estimate'])} (run {t['run_id']})"
              for t in result["transitions"]] or ["  -"]
    lines.append("density rows (district_density_published):")
    lines += [f"  {d['window_start']} people={_shown(d['people_estimate'], d['suppression'])} "
              f"completeness={d['completeness']} drops={d['drops']} run={d['run_id']}" for d in result["density"]] or ["  -"]
    lines.append("drops:")
    for drop in result["drops"]:
        if drop.get("sha256") is None and drop.get("operator") is None:
            lines.append(f"  {escape_text(drop['drop_id'])}: {drop['status']}")
            continue
        checks = drop["checks"]
        # Ids and operator names come from operators' files: shown escaped, never raw (common/text.py).
        lines.append(f"  {escape_text(drop['drop_id'])} {escape_text(drop['operator'])} window {drop['window_start']} "
                     f"sha256 {drop['sha256']}")
        lines.append(f"    contract {drop['contract_id']}@{drop['contract_version']} status {drop['status']} "
                     f"checks passed={checks['passed']} failed={checks['failed']}"
                     + (f" ({', '.join(checks['failed_rules'])})" if checks["failed_rules"] else "") + f" run {drop['run_id']}")
        if drop["certificates"]:
            for cert in drop["certificates"]:
                lines.append(f"    deleted {cert['deleted_at']}: {cert['object_kind']} certificate {cert['certificate_id']} "
                             f"[{cert['policy']}, {cert['retention_period']}] {cert['verification']}")
        else:
            lines.append("    not deleted yet" if not drop["deleted"] else "    deleted (no certificate found)")
    return "\n".join(lines)


def trace_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=True, default=str)
