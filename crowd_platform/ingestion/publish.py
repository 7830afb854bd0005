"""Publish a window: validated staging files move to the lake, older deliveries are superseded."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime


from crowd_platform.common import storage
from crowd_platform.common.settings import Settings
from crowd_platform.common.crashpoints import crash_point
from crowd_platform.common.warehouse import transaction

from crowd_platform.ingestion.drops import (DropOutcome, audit_drop, lake_file, staging_file)

log = logging.getLogger(__name__)


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
        target = lake_file(settings, drop)
        # Atomic: a rename on one filesystem, one complete PUT on an object store.
        storage.move(staged, target)
        crash_point("publish_moved")
        rivals = fetch_dicts(connection,
            "SELECT drop_id, delivery, received_at, lake_path FROM drops WHERE status = 'accepted' AND operator = ? AND feed = ? "
            "AND window_start = ? AND drop_id <> ?", [drop["operator"], drop["feed"], drop["window_start"], drop["drop_id"]])
        newer = [rival for rival in rivals if (rival["delivery"], rival["received_at"]) > (drop["delivery"], drop["received_at"])]
        older = [rival for rival in rivals if rival not in newer]
        with transaction(connection):
            connection.execute("UPDATE drops SET status = 'accepted', lake_path = ? WHERE drop_id = ?", [settings.stored(target), drop["drop_id"]])
            audit_drop(connection, settings, "drop_published", drop["drop_id"], run_id, lake_path=settings.stored(target), rows=drop["rows_loaded"])
            winner = max(newer, key=lambda rival: (rival["delivery"], rival["received_at"]))["drop_id"] if newer else drop["drop_id"]
            losers = older + ([drop] if newer else [])
            for loser in losers:
                connection.execute("UPDATE drops SET status = 'superseded', superseded_by = ?, lake_path = NULL WHERE drop_id = ?",
                                   [winner, loser["drop_id"]])
                audit_drop(connection, settings, "drop_superseded", loser["drop_id"], run_id, superseded_by=winner)
        for loser in older + ([{"lake_path": settings.stored(target)}] if newer else []):
            # Lake file removed (no downstream read), raw copy kept until retention.
            if loser.get("lake_path"):
                storage.remove(settings.resolve(loser["lake_path"]))
        shutil.rmtree(settings.staging / drop["drop_id"], ignore_errors=True)
        outcomes.append(DropOutcome(drop["drop_id"], drop["operator"], drop["feed"], "superseded" if newer else "accepted", rows=drop["rows_loaded"]))
    return outcomes
