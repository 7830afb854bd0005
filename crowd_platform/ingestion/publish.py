"""Publish a window: validated staging files move to the lake, older deliveries are superseded."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from crowd_platform.common import storage
from crowd_platform.common.erasure import PUBLISHED_STAGING, DeletedObject, delete_certified, superseded_reason
from crowd_platform.common.settings import Settings
from crowd_platform.common.crashpoints import crash_point

from crowd_platform.ingestion.drops import (DropOutcome, audit_drop, lake_file, staging_file, utcnow)
from crowd_platform.ingestion.quarantine import quarantine_drop

log = logging.getLogger(__name__)

CONFLICT_RULE = "delivery_not_conflicting"
CONFLICT_REASON = "conflicting delivery: another file for this operator, feed, window and delivery number was already accepted"


def publish_window(settings: Settings, connection, start: datetime, end: datetime, run_id: str | None) -> list[DropOutcome]:
    """Move validated staging files of [start, end) to the lake, accept them, supersede older deliveries."""
    from crowd_platform.common.warehouse import fetch_dicts

    ready = fetch_dicts(connection,
        "SELECT * FROM drops WHERE status = 'received' AND validated_at IS NOT NULL AND window_start >= ? AND window_start < ? "
        "ORDER BY window_start, delivery, received_at", [start, end])
    outcomes = []
    for drop in ready:
        staged = staging_file(settings, drop["drop_id"], drop["feed"])
        verdict = connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT passed) FROM check_results WHERE drop_id = ? AND engine NOT IN ('manifest', 'profile')",
            [drop["drop_id"]]).fetchone()
        if not staged.exists() or verdict[0] == 0 or verdict[1] > 0:
            # Never publish without a passing validation record (the blocking check reports it too).
            log.warning("drop %s not published: staging file or passing validation record missing", drop["drop_id"])
            continue
        conflict = _conflicting_delivery(connection, drop)
        if conflict is not None:
            outcomes.append(_quarantine_conflict(settings, connection, drop, conflict, run_id))
            continue
        target = lake_file(settings, drop)
        # Atomic: a rename on one filesystem, one complete PUT on an object store.
        storage.move(staged, target)
        crash_point("publish_moved")
        rivals = fetch_dicts(connection,
            "SELECT drop_id, delivery, received_at, lake_path, window_start FROM drops WHERE status = 'accepted' AND operator = ? AND feed = ? "
            "AND window_start = ? AND drop_id <> ?", [drop["operator"], drop["feed"], drop["window_start"], drop["drop_id"]])
        newer = [rival for rival in rivals if (rival["delivery"], rival["received_at"]) > (drop["delivery"], drop["received_at"])]
        older = [rival for rival in rivals if rival not in newer]
        winner = max(newer, key=lambda rival: (rival["delivery"], rival["received_at"])) if newer else drop
        losers = older + ([drop] if newer else [])

        def record(drop=drop, target=target, winner=winner, losers=losers) -> None:
            connection.execute("UPDATE drops SET status = 'accepted', lake_path = ? WHERE drop_id = ?", [settings.stored(target), drop["drop_id"]])
            audit_drop(connection, settings, "drop_published", drop["drop_id"], run_id, lake_path=settings.stored(target), rows=drop["rows_loaded"])
            for loser in losers:
                connection.execute("UPDATE drops SET status = 'superseded', superseded_by = ?, lake_path = NULL WHERE drop_id = ?",
                                   [winner["drop_id"], loser["drop_id"]])
                audit_drop(connection, settings, "drop_superseded", loser["drop_id"], run_id, superseded_by=winner["drop_id"])

        # The losers' lake files go with a certificate, in the same transaction as the status change
        # (no downstream read); their raw copies are kept until retention.
        superseded = [_lake_object(settings, loser, target if loser is drop else None) for loser in losers]
        delete_certified(settings, connection, [item for item in superseded if item is not None],
                         reason=superseded_reason(winner["delivery"]), run_id=run_id, changes=record)
        _remove_staging(settings, connection, drop["drop_id"], run_id)
        outcomes.append(DropOutcome(drop["drop_id"], drop["operator"], drop["feed"], "superseded" if newer else "accepted", rows=drop["rows_loaded"]))
    return outcomes


def _conflicting_delivery(connection, drop: dict[str, Any]) -> str | None:
    """An accepted (or since superseded) drop with other bytes under the same operator, feed, window
    and delivery number: two files claim to be the same delivery, neither may silently replace
    the other. (Identical bytes never get here: they are recorded as a duplicate on arrival.)"""
    row = connection.execute(
        "SELECT drop_id FROM drops WHERE status IN ('accepted', 'superseded') AND operator = ? AND feed = ? AND window_start = ? "
        "AND delivery = ? AND drop_id <> ? AND sha256 IS DISTINCT FROM ? ORDER BY received_at LIMIT 1",
        [drop["operator"], drop["feed"], drop["window_start"], drop["delivery"], drop["drop_id"], drop["sha256"]]).fetchone()
    return row[0] if row else None


def _quarantine_conflict(settings: Settings, connection, drop: dict[str, Any], accepted_id: str, run_id: str | None) -> DropOutcome:
    """The later of two conflicting deliveries goes to quarantine (bytes and report); the accepted one stays."""
    details = f"delivery {drop['delivery']} of this operator, feed and window is already accepted as drop {accepted_id}"
    connection.execute(
        "INSERT INTO check_results VALUES (?, ?, 'manifest', false, NULL, NULL, [], ?, ?, ?)",
        [drop["drop_id"], CONFLICT_RULE, details, utcnow(), run_id])
    return quarantine_drop(settings, connection, drop["drop_id"], CONFLICT_REASON, stage="publish",
                           failed_rules=[{"rule": CONFLICT_RULE, "engine": "manifest", "passed": False, "details": details,
                                          "conflicts_with": accepted_id}],
                           run_id=run_id, rows=drop["rows_loaded"])


def _lake_object(settings: Settings, loser: dict[str, Any], own_target: Path | None) -> DeletedObject | None:
    """A superseded drop's lake file as an object to delete (None if it has none)."""
    path = own_target if own_target is not None else settings.resolve(loser.get("lake_path"))
    if path is None:
        return None
    try:
        partition = "/".join(path.relative_to(settings.lake).parts[:-1])
    except ValueError:
        partition = None
    return DeletedObject("lake_partition", loser["drop_id"], [path], window_start=loser.get("window_start"),
                         partition_key=partition)


def _remove_staging(settings: Settings, connection, drop_id: str, run_id: str | None) -> None:
    """The drop's staging folder: empty after a local publish (plain rmdir); a scratch copy left
    there (object-store deployments parse a local copy) is deleted with a certificate."""
    folder = settings.staging / drop_id
    if storage.files_under(folder):
        delete_certified(settings, connection, [DeletedObject("staging", drop_id, [folder])],
                         reason=PUBLISHED_STAGING, run_id=run_id)
    shutil.rmtree(folder, ignore_errors=True)
