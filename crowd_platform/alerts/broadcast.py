"""Broadcast requests: what each operator is asked to send for an opened or escalated alert.

One request per (transition, operator with cells covering the alert place), with an idempotent
``request_id``. Requests and outbox files are recorded in one short transaction with no network
inside it; HTTP delivery happens outside any warehouse connection and its outcome is recorded
after. Only a k-anonymous count leaves the platform (docs/design.md section 4.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timezone
from typing import Any, Callable

from crowd_platform.alerts.delivery import (
    DeliveryResult, load_templates, post_with_retries, render_messages, request_id_for, write_outbox_file,
)
from crowd_platform.alerts.engine import RETRACTED
from crowd_platform.alerts.rules import SITE_LEVEL
from crowd_platform.common import audit
from crowd_platform.common.crashpoints import crash_point
from crowd_platform.common.warehouse import fetch_dicts, insert_rows, read_sql, transaction
from crowd_platform.publication.kanon import publishable


@dataclass
class RecordedRequests:
    built: list[dict[str, Any]]
    existing: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: int = 0
    files_written: int = 0


def _cells_for(con, level: str, place_id: str, at: datetime, radius_m: float) -> list[tuple[str, list[str]]]:
    if level == SITE_LEVEL:
        rows = con.execute(read_sql("alerts/broadcast_requests_site_cells"),
                           {"site_id": place_id, "at": at, "radius_m": radius_m}).fetchall()
    else:
        rows = con.execute(read_sql("alerts/broadcast_requests_district_cells"),
                           {"level": level, "district_code": place_id, "at": at}).fetchall()
    return [(operator, list(cell_ids)) for operator, cell_ids in rows if cell_ids]


def _request(row: dict[str, Any], transition: str, window_start: datetime, operator: str, cell_ids: list[str],
             messages: dict[str, str], shown: int | None, settings) -> dict[str, Any]:
    return {
        "request_id": request_id_for(row["alert_id"], transition, window_start, operator),
        "alert_id": row["alert_id"],
        "transition": transition,
        "window_start": window_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "operator": operator,
        "level": row["level"],
        "place_id": row["place_id"],
        "place_name": row["place_name"],
        "severity": int(row["severity"]),
        "cell_ids": cell_ids,
        "crowd_estimate": {"value": shown, "unit": "people",
                           "suppressed": shown is None},
        "message": {"id": messages["id"], "en": messages["en"]},
        "purpose": settings.purpose,
    }


def _place_cells(con, templates: dict[str, Any]) -> Callable[[str, str, datetime], list[tuple[str, list[str]]]]:
    """:func:`_cells_for` with the templates' neighbour radius, each (level, place, time) looked up
    once per build: the live alerts of one crowd are asked about again for every later transition."""
    radius_m = float(templates.get("site_neighbour_radius_m", 500))

    @lru_cache(maxsize=None)
    def cells(level: str, place_id: str, at: datetime) -> list[tuple[str, list[str]]]:
        return _cells_for(con, level, place_id, at, radius_m)

    return cells


def _covered_cells(con, cells, alert_id: str, at: datetime, *, opened_window: datetime | None = None
                   ) -> dict[str, set[str]]:
    """Per operator, the cells of other alerts live at ``at`` (with ``opened_window``: only those
    opened before this alert, ties by id, so two alerts of one window never drop each other's cells)."""
    live = fetch_dicts(con, read_sql("alerts/broadcast_requests_live_alerts"), {
        "alert_id": alert_id, "at": at, "earlier_only": opened_window is not None,
        "opened_window": opened_window or at})
    covered: dict[str, set[str]] = {}
    for other in live:
        for operator, cell_ids in cells(other["level"], other["place_id"], other["opened_window"].astimezone(timezone.utc)):
            covered.setdefault(operator, set()).update(cell_ids)
    return covered


def build_cancellations(con, settings) -> list[dict[str, Any]]:
    """A cancellation per (retracted alert, operator that was sent its request), with no crowd
    count: the earlier warning no longer holds. Cells another live alert stands behind are left
    out (those people are still near a crowd); if none is left the cancellation still goes, with
    no cells, so the operator's record of the alert is closed."""
    templates = load_templates(settings)
    cells_of = _place_cells(con, templates)
    now = datetime.now(timezone.utc)
    cancellations = []
    for row in fetch_dicts(con, read_sql("alerts/broadcast_requests_cancellations")):
        opened = row["opened_window"].astimezone(timezone.utc)
        messages = render_messages(templates, RETRACTED, row["level"], row["place_name"] or row["place_id"],
                                   row["place_id"], int(row["severity"]))
        still_warned = _covered_cells(con, cells_of, row["alert_id"], now).get(row["operator"], set())
        cells = [cell for cell in row["cell_ids"] if cell not in still_warned]
        cancellations.append(_request(row, RETRACTED, opened, row["operator"], cells, messages, None, settings))
    return cancellations


def build_requests(con, settings, start: datetime, end: datetime, run_id: str | None = None) -> list[dict[str, Any]]:
    """One request per (opened/escalated transition in [start, end) or carried forward by this
    run, operator with covering cells)."""
    templates = load_templates(settings)
    cells_of = _place_cells(con, templates)
    k = settings.k_anonymity
    requests_out = []
    for row in fetch_dicts(con, read_sql("alerts/broadcast_requests_transitions"),
                           {"start": start, "end": end, "run_id": run_id}):
        window_start = row["window_start"].astimezone(timezone.utc)
        messages = render_messages(templates, row["transition"], row["level"], row["place_name"] or row["place_id"],
                                   row["place_id"], int(row["severity"]))
        observed = row["observed"]
        # Only a k-anonymous count leaves the platform; otherwise null.
        shown = int(round(observed)) if publishable(observed, k) else None
        # One crowd often lights up several neighbouring places: a new alert does not warn cells an
        # earlier live alert already warned (the same people would get a second SMS for one crowd).
        covered = (_covered_cells(con, cells_of, row["alert_id"], window_start,
                                  opened_window=row["opened_window"].astimezone(timezone.utc))
                   if row["transition"] == "opened" else {})
        for operator, cell_ids in cells_of(row["level"], row["place_id"], window_start):
            fresh = [cell for cell in cell_ids if cell not in covered.get(operator, set())]
            if fresh:
                requests_out.append(_request(row, row["transition"], window_start, operator, fresh, messages, shown,
                                             settings))
    return requests_out


def record_requests(con, settings, start: datetime, end: datetime, run_id: str | None) -> RecordedRequests:
    """Build the range's requests and any cancellations due, write each outbox file once and record new requests with their
    audit records in one transaction. A rerun rewrites nothing already recorded."""
    now = datetime.now(timezone.utc)
    recorded = RecordedRequests(build_requests(con, settings, start, end, run_id) + build_cancellations(con, settings))
    ids = [request["request_id"] for request in recorded.built]
    if ids:
        recorded.existing = {row["request_id"]: row for row in fetch_dicts(
            con, "SELECT request_id, delivered_at, attempts FROM broadcast_requests WHERE list_contains(?, request_id)",
            [ids])}
    with transaction(con):
        for request in recorded.built:
            path = settings.outbox / request["operator"] / f"{request['request_id']}.json"
            if write_outbox_file(path, request):
                recorded.files_written += 1
                crash_point("broadcast_written")
            if request["request_id"] in recorded.existing:
                continue
            insert_rows(con, "broadcast_requests", {
                "request_id": request["request_id"], "alert_id": request["alert_id"],
                "transition": request["transition"], "operator": request["operator"], "cell_ids": request["cell_ids"],
                "message_id": request["message"]["id"], "message_en": request["message"]["en"], "created_at": now,
                "outbox_path": str(path), "http_status": None, "attempts": 0, "delivered_at": None, "run_id": run_id,
            })
            audit.append(con, "broadcast_requested", purpose=settings.purpose, object_kind="broadcast_request",
                         object_id=request["request_id"], run_id=run_id,
                         details={"alert_id": request["alert_id"], "transition": request["transition"],
                                  "operator": request["operator"], "cells": len(request["cell_ids"])})
            recorded.created += 1
    return recorded


def deliver_pending(recorded: RecordedRequests, targets: dict[str, Any],
                    log: Callable[[str], None]) -> dict[str, DeliveryResult]:
    """POST, with retries, every request of an operator with an HTTP target not yet delivered."""
    results: dict[str, DeliveryResult] = {}
    for request in recorded.built:
        if request["operator"] not in targets or (recorded.existing.get(request["request_id"]) or {}).get("delivered_at"):
            continue
        result = post_with_retries(targets[request["operator"]], request, request["request_id"])
        results[request["request_id"]] = result
        log(f"broadcast {request['request_id']} to {request['operator']}: "
            f"status {result.http_status} after {result.attempts} attempt(s)")
    return results


def record_deliveries(con, settings, results: dict[str, DeliveryResult], run_id: str | None) -> None:
    with transaction(con):
        for request_id, result in results.items():
            con.execute("UPDATE broadcast_requests SET http_status = ?, attempts = coalesce(attempts, 0) + ?, "
                        "delivered_at = ? WHERE request_id = ?",
                        [result.http_status, result.attempts, result.delivered_at, request_id])
            audit.append(con, "broadcast_delivered" if result.delivered else "broadcast_delivery_failed",
                         purpose=settings.purpose, object_kind="broadcast_request", object_id=request_id,
                         run_id=run_id, details={"http_status": result.http_status, "attempts": result.attempts})
