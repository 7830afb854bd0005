"""Auditor report: one self-contained HTML file (no external assets) for a date range.

Drops received and quarantined per operator, checks run (pass/fail per rule), alerts and their
evidence, broadcasts sent, deletions with certificates, and the audit chain verification.
Counts of people come only from the publication (crowd_alerts_published, as
district_density_published shows them). Operational counts (drops, checks, requests) count
files and messages, not people: they are exact, so an auditor can see that nothing failed.
Drops, checks, alerts and broadcasts are selected by the data period (window times); deletions
by the window of what they deleted (the period's data, whenever deleted) or by when they
happened (any deletion made during the period). No subscriber-level value is ever read.
"""

from __future__ import annotations

import html
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.geography import maps
from crowd_platform.governance.audit_chain import verify_chain
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import fetch_dicts, read_sql

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:75rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}th{background:#f3f3f3}
figure{margin:.5rem 0}figure img{max-width:100%;border:1px solid #ccc}figcaption{color:#555;font-size:.85rem}
.ok{color:#176d2c;font-weight:bold}.bad{color:#a11;font-weight:bold}.note{color:#555;font-size:.85rem}
"""


def _esc(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return '<p class="note">none in this period</p>'
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def collect(connection: duckdb.DuckDBPyConnection, settings: Settings, start: date, end: date) -> dict[str, Any]:
    """Every section's rows for [start, end] (inclusive days, UTC)."""
    connection.execute("SET TimeZone = 'UTC'")
    lo = datetime(start.year, start.month, start.day, tzinfo=timezone.utc)
    hi = datetime(end.year, end.month, end.day, tzinfo=timezone.utc) + timedelta(days=1)
    params = [lo, hi]
    return {
        "drops": fetch_dicts(connection,
            "SELECT operator, count(*) AS received, count(*) FILTER (WHERE status <> 'duplicate' AND (status = 'quarantined' OR quarantine_path IS NOT NULL)) AS quarantined, "
            "count(*) FILTER (WHERE status = 'deleted') AS deleted FROM drops "
            "WHERE window_start >= ? AND window_start < ? GROUP BY operator ORDER BY operator", params),
        "checks": fetch_dicts(connection,
            "SELECT c.rule, c.engine, count(*) FILTER (WHERE c.passed) AS passed, count(*) FILTER (WHERE NOT c.passed) AS failed "
            "FROM check_results c JOIN drops d USING (drop_id) WHERE d.window_start >= ? AND d.window_start < ? "
            "GROUP BY ALL ORDER BY c.rule", params),
        "alerts": fetch_dicts(connection,
            "SELECT alert_id, level, place_id, place_name, state, severity, opened_window, last_window, people_estimate, "
            "len(drop_ids) AS drops, contract_versions, code_version, run_id FROM crowd_alerts_published "
            "WHERE opened_window < ? AND coalesce(closed_window, last_window) >= ? ORDER BY opened_window", [hi, lo]),
        "broadcasts": fetch_dicts(connection, read_sql("governance/report_broadcasts"), {"lo": lo, "hi": hi}),
        "deletions": fetch_dicts(connection,
            "SELECT certificate_id, object_kind, object_id, partition_key, rows, bytes, content_sha256, policy, "
            "retention_period, deleted_at, method, verification FROM deletion_certificates "
            "WHERE (deleted_at >= ? AND deleted_at < ?) OR (window_start >= ? AND window_start < ?) "
            "ORDER BY deleted_at, certificate_id", params + params),
        "chain": verify_chain(connection, settings.witness),
        "map": _busiest_window_map(connection, settings, lo, hi),
    }


def _busiest_window_map(connection: duckdb.DuckDBPyConnection, settings: Settings, lo: datetime,
                        hi: datetime) -> dict[str, Any]:
    """The published density of the period's busiest published window (finest level) with the places
    of the period's alerts outlined, as a data URI (the report is one file). Published tables only."""
    if maps.finest_level(connection) is None:
        return {"uri": None, "reason": "no district boundaries in the warehouse"}
    busiest = connection.execute(read_sql("governance/report_busiest_window"), {"lo": lo, "hi": hi}).fetchone()
    if not busiest:
        return {"uri": None, "reason": "no published density value in this period"}
    window = busiest[0]
    tz_name = settings.config.density.local_timezone
    title = (f"Busiest published window: {maps.local_label(window, tz_name, settings.window_minutes)}\n"
             f"with the places of the period's crowd alerts")
    with tempfile.TemporaryDirectory(prefix="crowd-report-map-") as folder:
        try:
            drawn = maps.published_density_map(connection, settings, window, Path(folder) / "map.png", title=title,
                                               alerts_from=lo, alerts_to=hi, figsize=(8.5, 7.0), dpi=100)
        except ValueError as error:  # e.g. boundaries without geometry: the report goes out without its map
            return {"uri": None, "reason": f"map not drawn: {error}"}
        uri = maps.png_data_uri(drawn.path) if drawn.path is not None else None
    return {"uri": uri, "window": window, "level": drawn.level, "shown": drawn.districts_shown,
            "suppressed": drawn.districts_suppressed, "district_alerts": drawn.district_alerts,
            "site_alerts": drawn.site_alerts}


def render(data: dict[str, Any], settings: Settings, start: date, end: date) -> str:
    k = settings.k_anonymity
    sections = []
    sections.append("<h2>Drops received and quarantined, per operator</h2>" + _table(
        ["operator", "drops received", "quarantined", "deleted since"],
        [[d["operator"], d["received"], d["quarantined"], d["deleted"]] for d in data["drops"]]))
    sections.append("<h2>Checks run (per contract rule)</h2>" + _table(
        ["rule", "engine", "passed", "failed"], [[c["rule"], c["engine"], c["passed"], c["failed"]] for c in data["checks"]]))
    sections.append("<h2>Alerts and their evidence</h2>" + _table(
        ["alert", "place", "state", "severity", "opened", "last window", "people (last window)",
         "drops", "contract versions", "code version", "run"],
        [[a["alert_id"], f"{a['level']} {a['place_id']} {a['place_name'] or ''}", a["state"], a["severity"], a["opened_window"],
          a["last_window"], a["people_estimate"] if a["people_estimate"] is not None else "hidden",
          a["drops"], ", ".join(a["contract_versions"] or []), a["code_version"], a["run_id"]] for a in data["alerts"]])
        + '<p class="note">People are shown as district_density_published shows them (hidden there, hidden here; a site '
          "count is never shown). Baselines, ratios and z-scores stay inside the platform: with a published value "
          "they would give a hidden one back. Trace any alert with <code>crowd-platform audit trace ALERT_ID</code>.</p>")
    sections.append("<h2>Broadcast requests sent (for alerts of the period)</h2>" + _table(
        ["operator", "transition", "requests", "cells", "delivered", "first written", "last written"],
        [[b["operator"], b["transition"], b["requests"], b["cells"], b["delivered"], b["first_created"], b["last_created"]]
         for b in data["broadcasts"]]))
    deletions = data["deletions"]
    sections.append("<h2>Deletions and their certificates (of the period's data, and any made during it)</h2>"
                    '<p class="note">One certificate per deleted object, modeled on NIST SP 800-88 Rev.1 '
                    "(certificate of sanitization). Rows and bytes describe deleted objects, not people.</p>" + _table(
        ["certificate", "kind", "object", "partition", "rows", "bytes", "sha256 before deletion", "policy", "period",
         "deleted at", "method", "verification"],
        [[d["certificate_id"], d["object_kind"], d["object_id"], d["partition_key"], d["rows"], d["bytes"],
          d["content_sha256"], d["policy"], d["retention_period"], d["deleted_at"], d["method"], d["verification"]]
         for d in deletions]))
    sections.append(_map_section(data.get("map") or {}, settings))
    chain = data["chain"]
    verdict = (f'<p class="ok">{_esc(chain.summary())}</p>' if chain.ok else f'<p class="bad">{_esc(chain.summary())}</p>')
    sections.append("<h2>Audit chain verification</h2>" + verdict)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>crowd_platform audit report {start} to {end}</title><style>{_STYLE}</style></head><body>"
        f"<h1>crowd_platform audit report: {start} to {end}</h1>"
        f"<p class=\"note\">Generated {generated}. Purpose: {_esc(settings.purpose)}. Data period {start} to {end} "
        f"(UTC days of the windows). Counts of people are k-anonymous (k={k}) as published; counts of drops, checks and "
        f"requests are exact.</p>"
        + "".join(sections) + "</body></html>"
    )


def _map_section(drawn: dict[str, Any], settings: Settings) -> str:
    k = settings.k_anonymity
    heading = "<h2>Map: busiest published window and the alert places</h2>"
    if not drawn.get("uri"):
        return heading + f'<p class="note">No map: {_esc(drawn.get("reason") or "nothing to draw")}.</p>'
    tz_name = settings.config.density.local_timezone
    caption = (f"Published density (district_density_published) by {_esc(drawn['level'])} in the busiest published "
               f"window of the period, {_esc(maps.local_label(drawn['window'], tz_name, settings.window_minutes))}; "
               f"{_esc(drawn['shown'])} districts shown, {_esc(drawn['suppressed'])} suppressed. "
               f"Hatched grey: suppressed (k-anonymity, k={k}): the publication hides the value, so the map shows "
               f"neither a number nor a colour for it; the colour scale is built from shown values only. "
               f"Blue outline: a district alert of the period ({_esc(drawn['district_alerts'])}); blue ring: a site "
               f"alert's place ({_esc(drawn['site_alerts'])}). Outlying islands are drawn in the inset.")
    return (heading + f'<figure><img alt="published density map with alert places" src="{drawn["uri"]}">'
            f"<figcaption>{caption}</figcaption></figure>")


def write_report(connection: duckdb.DuckDBPyConnection, settings: Settings, start: date, end: date,
                 out: Path | None = None) -> Path:
    if end < start:
        raise ValueError("--to is before --from")
    document = render(collect(connection, settings, start, end), settings, start, end)
    out = out or settings.reports / f"audit_report_{start}_{end}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(document, encoding="utf-8")
    temporary.replace(out)
    return out
