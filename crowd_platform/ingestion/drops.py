"""A drop's record and where its bytes live: outcome, final statuses, file helpers, audit.

Shared by the three steps a drop goes through (ingest.py, quarantine.py, publish.py). Every
state change commits together with its audit_log record; files move before the rows that
describe them. Nothing here logs or stores a subscriber-level value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from crowd_platform.common import audit
from crowd_platform.common import storage
from crowd_platform.common.settings import Settings


log = logging.getLogger(__name__)
FINAL_STATUSES = ("accepted", "quarantined", "superseded", "rejected", "deleted")


@dataclass
class DropOutcome:
    drop_id: str
    operator: str | None
    feed: str | None
    status: str
    reason: str | None = None
    failed_rules: list[dict[str, Any]] = field(default_factory=list)
    rows: int | None = None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def file_sha256(path: Path) -> str:
    return storage.sha256_and_size(path)[0]


def copy_atomic(source: Path, target: Path) -> None:
    """Atomic copy (local: temp + fsync + rename; object store: the key written complete)."""
    storage.copy_file(source, target)


def copy_hashing(source: Path, target: Path) -> str:
    """Copy into a local file with fsync and return the sha256 of the bytes copied."""
    return storage.copy_hashing(source, target)


def data_suffix(file_name: str) -> str:
    for known in (".csv.gz", ".csv", ".parquet", ".gz"):
        if file_name.endswith(known):
            return known
    return ""


def staging_file(settings: Settings, drop_id: str, feed: str) -> Path:
    return settings.staging / drop_id / f"{feed}.parquet"


def lake_file(settings: Settings, drop: dict[str, Any]) -> Path:
    if drop["feed"] == "cells":
        return settings.lake / "cells" / f"operator={drop['operator']}" / f"{drop['drop_id']}.parquet"
    start = drop["window_start"].astimezone(timezone.utc)
    return (
        settings.events_lake / f"date={start:%Y-%m-%d}" / f"window={start:%H%M}" / f"operator={drop['operator']}" / f"{drop['drop_id']}.parquet"
    )


def audit_drop(connection, settings: Settings, action: str, drop_id: str, run_id: str | None, **details: Any) -> None:
    audit.append(connection, action, purpose=settings.purpose, object_kind="drop", object_id=drop_id, run_id=run_id, details=details)


def one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]
