"""Append-only, hash-chained audit log (docs/design.md section 4.5).

Each record's hash covers its canonical content and the previous record's hash, so any
changed, deleted, inserted or reordered record breaks the chain from that point on.
Callers append inside their own warehouse transaction so the record and the change it
describes commit together.
"""

from __future__ import annotations

import hashlib
import json
import getpass
from datetime import datetime, timezone
from typing import Any

import duckdb

from crowd_platform.common.settings import env

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def record_hash(prev_hash: str, seq: int, recorded_at: str, actor: str, purpose: str, action: str,
                object_kind: str | None, object_id: str | None, run_id: str | None, details: str) -> str:
    payload = canonical_json([seq, recorded_at, actor, purpose, action, object_kind, object_id, run_id, details])
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def default_actor() -> str:
    return env("CROWD_ACTOR") or f"system:{getpass.getuser()}"


def append(
    connection: duckdb.DuckDBPyConnection,
    action: str,
    *,
    purpose: str,
    actor: str | None = None,
    object_kind: str | None = None,
    object_id: str | None = None,
    run_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> str:
    """Append one record and return its hash. ``details`` must hold no subscriber-level value."""
    last = connection.execute("SELECT seq, record_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    # Microsecond UTC text, the exact string hashed, so verification needs no timestamp parsing.
    recorded_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    actor = actor or default_actor()
    details_json = canonical_json(details or {})
    digest = record_hash(prev_hash, seq, recorded_at, actor, purpose, action, object_kind, object_id, run_id, details_json)
    connection.execute(
        "INSERT INTO audit_log VALUES (?, ?::TIMESTAMPTZ, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [seq, recorded_at, actor, purpose, action, object_kind, object_id, run_id, details_json, prev_hash, digest],
    )
    return digest
