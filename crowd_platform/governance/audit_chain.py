"""Verification of the hash-chained audit log, and witness checkpoints published outside it.

``verify_chain`` recomputes every record's hash from its stored content and the previous
record's hash (crowd_platform.common.audit.record_hash), so a changed, deleted, inserted or
reordered record is reported at the first record where the chain breaks. A log whose tail
was cut off cleanly still chains; the witness checkpoints catch that: each names a sequence
number and the record hash the log had there on that day, and were copied out of the
platform (witness/<date>.json, witness/checkpoints.jsonl).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.common.audit import GENESIS_HASH, record_hash

CHECKPOINTS_FILE = "checkpoints.jsonl"
# Retention prunes the oldest records; the pruning itself is an audit record that names the
# last pruned record, so the remaining chain stays anchored (see governance/retention/).
PRUNE_ACTION = "audit.pruned"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad_seq: int | None
    reason: str | None
    records: int
    last_seq: int | None = None
    last_hash: str | None = None
    witness_checked: int = 0

    def summary(self) -> str:
        if self.ok:
            return (f"OK: {self.records} records, last seq {self.last_seq}, "
                    f"{self.witness_checked} witness checkpoint(s) matched")
        return f"FAILED at seq {self.first_bad_seq}: {self.reason}"


def format_recorded_at(value: Any) -> str:
    """The exact text lib.audit.append hashed (microsecond UTC, Z suffix)."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def _pruned_anchor(rows: list[tuple]) -> tuple[int, str] | None:
    """(through_seq, through_hash) named by the latest audit.pruned record, if any."""
    anchor = None
    for row in rows:
        if row[4] == PRUNE_ACTION:
            try:
                details = json.loads(row[8] or "{}")
                anchor = (int(details["through_seq"]), str(details["through_hash"]))
            except (ValueError, KeyError, TypeError):
                continue
    return anchor


def read_checkpoints(witness_dir: Path | None) -> list[dict[str, Any]]:
    """Every checkpoint in the append-only JSONL, plus any per-day file not in it."""
    if witness_dir is None or not witness_dir.exists():
        return []
    checkpoints: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    sources: list[dict[str, Any]] = []
    jsonl = witness_dir / CHECKPOINTS_FILE
    if jsonl.exists():
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            if line.strip():
                sources.append(json.loads(line))
    for path in sorted(witness_dir.glob("*.json")):
        sources.append(json.loads(path.read_text(encoding="utf-8")))
    for checkpoint in sources:
        key = (int(checkpoint["last_seq"]), str(checkpoint["last_record_hash"]))
        if key not in seen:
            seen.add(key)
            checkpoints.append(checkpoint)
    return sorted(checkpoints, key=lambda item: int(item["last_seq"]))


def verify_chain(connection: duckdb.DuckDBPyConnection, witness_dir: Path | None = None) -> VerifyResult:
    """Recompute the chain; report the first record where it breaks.

    Checks, per record in seq order: seq continues the previous one (no gap), prev_hash is
    the previous record's hash (no insertion, deletion or reordering), record_hash matches
    the content (no change). Then every witness checkpoint must name a record that still
    exists with the same hash (no truncation, no rewrite of history before the checkpoint).
    """
    rows = connection.execute(
        "SELECT seq, recorded_at, actor, purpose, action, object_kind, object_id, run_id, details, "
        "prev_hash, record_hash FROM audit_log ORDER BY seq"
    ).fetchall()
    if not rows:
        checkpoints = read_checkpoints(witness_dir)
        if checkpoints:
            return VerifyResult(False, int(checkpoints[0]["last_seq"]), "audit log is empty but witness checkpoints exist", 0)
        return VerifyResult(True, None, None, 0)

    expected_seq, expected_prev = 1, GENESIS_HASH
    anchor = _pruned_anchor(rows)
    first_seq = rows[0][0]
    if first_seq != 1:
        # Only a recorded pruning may remove the head of the chain.
        if anchor is None or anchor[0] != first_seq - 1:
            return VerifyResult(False, 1, f"records before seq {first_seq} are missing (no audit.pruned record covers them)", len(rows))
        expected_seq, expected_prev = anchor[0] + 1, anchor[1]

    hashes: dict[int, str] = {}
    for seq, recorded_at, actor, purpose, action, object_kind, object_id, run_id, details, prev_hash, stored_hash in rows:
        if seq != expected_seq:
            return VerifyResult(False, expected_seq, f"record seq {expected_seq} is missing (next stored seq is {seq})", len(rows))
        if prev_hash != expected_prev:
            return VerifyResult(False, seq, "prev_hash does not match the previous record (record inserted, deleted or reordered)", len(rows))
        computed = record_hash(prev_hash, seq, format_recorded_at(recorded_at), actor, purpose, action,
                               object_kind, object_id, run_id, details)
        if computed != stored_hash:
            return VerifyResult(False, seq, "record_hash does not match the record's content (record changed)", len(rows))
        hashes[seq] = stored_hash
        expected_seq, expected_prev = seq + 1, stored_hash

    last_seq, last_hash = rows[-1][0], rows[-1][10]
    checked = 0
    for checkpoint in read_checkpoints(witness_dir):
        seq = int(checkpoint["last_seq"])
        if anchor is not None and seq <= anchor[0]:
            if seq == anchor[0] and checkpoint["last_record_hash"] != anchor[1]:
                return VerifyResult(False, seq, f"pruning anchor disagrees with witness checkpoint of {checkpoint['date']}", len(rows))
            checked += 1
            continue
        if seq not in hashes:
            return VerifyResult(False, seq, f"record seq {seq} named by witness checkpoint of {checkpoint['date']} is missing (log truncated)",
                                len(rows), last_seq, last_hash, checked)
        if hashes[seq] != checkpoint["last_record_hash"]:
            return VerifyResult(False, seq, f"record seq {seq} differs from witness checkpoint of {checkpoint['date']} (history rewritten)",
                                len(rows), last_seq, last_hash, checked)
        checked += 1
    return VerifyResult(True, None, None, len(rows), last_seq, last_hash, checked)


def _append_durably(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_checkpoint(connection: duckdb.DuckDBPyConnection, witness_dir: Path, day: date | None = None,
                     result: VerifyResult | None = None) -> dict[str, Any]:
    """Export today's checkpoint (date, last seq, last record_hash, count) to the witness folder.

    Refuses to checkpoint a broken chain: a witness must only ever vouch for a verified log.
    """
    result = result or verify_chain(connection, witness_dir)
    if not result.ok:
        raise ValueError(f"audit chain does not verify: {result.summary()}")
    day = day or datetime.now(timezone.utc).date()
    checkpoint = {
        "date": day.isoformat(),
        "last_seq": result.last_seq or 0,
        "last_record_hash": result.last_hash or GENESIS_HASH,
        "count": result.records,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    witness_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(checkpoint, sort_keys=True)
    day_file = witness_dir / f"{day.isoformat()}.json"
    temporary = day_file.with_name(f".{day_file.name}.tmp")
    temporary.write_text(line + "\n", encoding="utf-8")
    os.replace(temporary, day_file)
    _append_durably(witness_dir / CHECKPOINTS_FILE, line)
    return checkpoint


def result_dict(result: VerifyResult) -> dict[str, Any]:
    return asdict(result)


def record_checkpoint(connection: duckdb.DuckDBPyConnection, witness_dir: Path, result: VerifyResult, *,
                      purpose: str, actor: str | None, run_id: str | None = None) -> dict[str, Any]:
    """Write the witness checkpoint of a verified chain and record it in the chain itself, so the
    asset and the CLI leave the same trace."""
    from crowd_platform.common import audit

    checkpoint = write_checkpoint(connection, witness_dir, result=result)
    audit.append(connection, "audit.checkpoint", purpose=purpose, actor=actor, object_kind="witness",
                 object_id=checkpoint["date"], run_id=run_id, details=checkpoint)
    return checkpoint
