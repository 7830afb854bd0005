"""Verification of the hash-chained audit log, and witness checkpoints published outside it.

``verify_chain`` recomputes every record's hash from its stored content and the previous
record's hash (crowd_platform.common.audit.record_hash), so a changed, deleted, inserted or
reordered record is reported at the first record where the chain breaks. A log whose tail
was cut off cleanly still chains; the witness checkpoints catch that: each names the first
and last sequence numbers and the last record hash the log had on that day, and lives
outside the warehouse (settings.witness: a folder or an object-storage prefix, ideally
outside CROWD_HOME; see docs/decisions/014-audit-witness.md).

Records after the newest checkpoint chain correctly but nothing outside the warehouse vouches
for them: a consistent rewrite of that tail is undetectable until the next checkpoint, so the
result then has status ``unwitnessed_tail``, never plain OK.

Only retention may remove the head of the chain, and only what a witness saw and what was past
the audit retention: an ``audit.pruned`` record is trusted only if a witness checkpoint covers
its through_seq with the same hash, and that checkpoint is older than the audit retention period
(data_contracts/platform_datasets.yaml) at the prune record's own time.

Given CROWD_HOME (``home``), verification also re-hashes the API audit files sealed into the
chain (governance/api_audit.py): a sealed file changed, truncated or deleted without a retention
deletion record fails at its seal record's seq, with one line naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.common import storage
from crowd_platform.common.audit import GENESIS_HASH, record_hash
from crowd_platform.common.storage import Location

CHECKPOINTS_FILE = "checkpoints.jsonl"   # local witness: append-only JSONL
CHECKPOINT_OBJECTS = "checkpoints"       # object-storage witness: one object per checkpoint
# Retention prunes the oldest records; the pruning itself is an audit record that names the
# last pruned record, so the remaining chain stays anchored (see governance/retention/).
PRUNE_ACTION = "audit.pruned"
# A prune record dated later than this after the verification is forged (clock skew allowance).
FUTURE_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    first_bad_seq: int | None
    reason: str | None
    records: int
    last_seq: int | None = None
    last_hash: str | None = None
    witness_checked: int = 0
    first_seq: int | None = None
    witnessed_through: int | None = None   # highest seq a witness checkpoint vouches for
    warnings: tuple[str, ...] = ()
    sealed_files: int = 0                  # sealed API audit files re-hashed (verify_chain with home)

    @property
    def status(self) -> str:
        """``failed``, ``unwitnessed_tail`` (chains, but records after the newest checkpoint are
        not provable without a newer one) or ``ok`` (every record is vouched for by a witness)."""
        if not self.ok:
            return "failed"
        if self.records and (self.witnessed_through or 0) < (self.last_seq or 0):
            return "unwitnessed_tail"
        return "ok"

    def summary(self) -> str:
        """One line: the verdict, then any warning."""
        warnings = "".join(f"; WARNING: {warning}" for warning in self.warnings)
        if not self.ok:
            return f"FAILED at seq {self.first_bad_seq}: {self.reason}{warnings}"
        counts = (f"{self.records} records, last seq {self.last_seq}, "
                  f"{self.witness_checked} witness checkpoint(s) matched")
        if self.sealed_files:
            counts += f", {self.sealed_files} sealed API audit file(s) intact"
        if self.status == "ok":
            return f"OK: {counts}{warnings}"
        start = (self.witnessed_through or 0) + 1
        return (f"OK (unwitnessed tail): {counts}; seq {max(start, self.first_seq or start)}..{self.last_seq} "
                f"not provable without a newer checkpoint{warnings}")


def format_recorded_at(value: Any) -> str:
    """The exact text lib.audit.append hashed (microsecond UTC, Z suffix)."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class _Prune:
    """An audit.pruned record: which record it names as the last one deleted, and when."""

    seq: int
    recorded_at: datetime | None
    through_seq: int
    through_hash: str
    through_recorded_at: datetime | None


def _pruned_anchor(rows: list[tuple], first_seq: int) -> _Prune | None:
    """The latest audit.pruned record naming the record just before the first stored one."""
    anchor = None
    for row in rows:
        if row[4] != PRUNE_ACTION:
            continue
        try:
            details = json.loads(row[8] or "{}")
            prune = _Prune(int(row[0]), _utc(row[1]), int(details["through_seq"]), str(details["through_hash"]),
                           _utc(details["through_recorded_at"]) if details.get("through_recorded_at") else None)
        except (ValueError, KeyError, TypeError):
            continue
        if prune.through_seq == first_seq - 1:
            anchor = prune
    return anchor


def checkpoint_time(checkpoint: dict[str, Any]) -> datetime | None:
    """When the witness saw the log: created_at, else the end of the checkpoint's date."""
    created = _utc(checkpoint["created_at"]) if checkpoint.get("created_at") else None
    if created is None and checkpoint.get("date"):
        day = _utc(f"{checkpoint['date']}T00:00:00Z")
        created = day + timedelta(days=1) if day else None
    return created


def audit_retention_hours() -> float | None:
    """The audit log's retention period, from the data contracts (the retention policy's source)."""
    from crowd_platform.common.settings import get_settings
    from crowd_platform.governance.retention.policy import load_policy

    rule = next((t.rule for t in load_policy(get_settings()).tables if t.table == "audit_log"), None)
    return rule.hours if rule else None


def _checkpoint_sources(witness: Location) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = []
    jsonl = witness / CHECKPOINTS_FILE
    if jsonl.exists():
        sources += [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    for folder in (witness, witness / CHECKPOINT_OBJECTS):
        for entry in sorted(storage.scandir(folder) if folder.exists() else [], key=lambda item: item.name):
            if entry.is_file() and entry.name.endswith(".json") and not entry.name.startswith("."):
                sources.append(json.loads(storage.entry_bytes(entry).decode("utf-8")))
    return sources


def read_checkpoints(witness_dir: Location | None) -> list[dict[str, Any]]:
    """Every checkpoint: the local JSONL, per-day files, and per-checkpoint objects (object storage).

    Checkpoints written before first_seq was recorded read with first_seq None (unknown)."""
    if witness_dir is None or not witness_dir.exists():
        return []
    checkpoints: list[dict[str, Any]] = []
    seen: set[tuple[int, str]] = set()
    for checkpoint in _checkpoint_sources(witness_dir):
        key = (int(checkpoint["last_seq"]), str(checkpoint["last_record_hash"]))
        if key not in seen:
            seen.add(key)
            checkpoints.append({"first_seq": None, **checkpoint})
    return sorted(checkpoints, key=lambda item: int(item["last_seq"]))


def _check_prune(prune: _Prune, checkpoints: list[dict[str, Any]], hashes: dict[int, str],
                 retention_hours: float | None) -> str | None:
    """Why the prune record cannot be trusted, or None: it must be covered by a witness
    checkpoint and the records it removed must have been past the audit retention."""
    covering = [c for c in checkpoints if int(c["last_seq"]) >= prune.through_seq and (
        c["last_record_hash"] == (prune.through_hash if int(c["last_seq"]) == prune.through_seq
                                  else hashes.get(int(c["last_seq"]))))]
    if not covering:
        return (f"audit.pruned record (seq {prune.seq}) is not covered by a witness checkpoint "
                f"(none vouches for seq {prune.through_seq} with its hash)")
    if retention_hours is None:
        return f"audit.pruned record (seq {prune.seq}) cannot be checked: no audit_log retention period in the contracts"
    if prune.recorded_at is None or prune.recorded_at > datetime.now(timezone.utc) + FUTURE_SLACK:
        return f"audit.pruned record (seq {prune.seq}) has a missing or future recorded_at"
    cutoff = prune.recorded_at - timedelta(hours=retention_hours)
    if prune.through_recorded_at is not None and prune.through_recorded_at >= cutoff:
        return (f"audit.pruned record (seq {prune.seq}) removed records younger than the audit retention "
                f"({retention_hours:g} h)")
    witnessed = [t for t in (checkpoint_time(c) for c in covering) if t is not None]
    if not witnessed or min(witnessed) >= cutoff:
        return (f"audit.pruned record (seq {prune.seq}): no witness checkpoint shows seq {prune.through_seq} "
                f"older than the audit retention ({retention_hours:g} h) at the pruning")
    return None


def _fail(seq: int | None, reason: str, rows: list[tuple], **more: Any) -> VerifyResult:
    return VerifyResult(False, seq, reason, len(rows), first_seq=rows[0][0] if rows else None, **more)


def _walk(rows: list[tuple], expected_seq: int, expected_prev: str) -> tuple[dict[int, str], VerifyResult | None]:
    """Recompute the chain from (expected_seq, expected_prev): every record's hash, or the first break."""
    hashes: dict[int, str] = {}
    for seq, recorded_at, actor, purpose, action, object_kind, object_id, run_id, details, prev_hash, stored_hash in rows:
        if seq != expected_seq:
            return hashes, _fail(expected_seq, f"record seq {expected_seq} is missing (next stored seq is {seq})", rows)
        if prev_hash != expected_prev:
            return hashes, _fail(seq, "prev_hash does not match the previous record (record inserted, deleted or reordered)", rows)
        computed = record_hash(prev_hash, seq, format_recorded_at(recorded_at), actor, purpose, action,
                               object_kind, object_id, run_id, details)
        if computed != stored_hash:
            return hashes, _fail(seq, "record_hash does not match the record's content (record changed)", rows)
        hashes[seq] = stored_hash
        expected_seq, expected_prev = seq + 1, stored_hash
    return hashes, None


def _check_witness(rows: list[tuple], hashes: dict[int, str], checkpoints: list[dict[str, Any]],
                   prune: _Prune | None) -> tuple[int, int | None, VerifyResult | None]:
    """Every checkpoint must name a record that still exists with the same hash (or one pruned
    under a trusted anchor). Returns (checkpoints matched, highest seq vouched for, failure)."""
    checked, vouched = 0, None
    first_seq, last_seq, last_hash = rows[0][0], rows[-1][0], rows[-1][10]
    for checkpoint in checkpoints:
        seq, when = int(checkpoint["last_seq"]), checkpoint.get("date")
        more = {"last_seq": last_seq, "last_hash": last_hash, "witness_checked": checked}
        if isinstance(checkpoint.get("first_seq"), int) and 0 < first_seq < checkpoint["first_seq"]:
            return checked, vouched, _fail(first_seq, f"records before seq {checkpoint['first_seq']} were already pruned "
                                                      f"at the witness checkpoint of {when} but are present again", rows, **more)
        if prune is not None and seq <= prune.through_seq:
            if seq == prune.through_seq and checkpoint["last_record_hash"] != prune.through_hash:
                return checked, vouched, _fail(seq, f"pruning anchor disagrees with witness checkpoint of {when}", rows, **more)
            checked += 1
            continue
        if seq not in hashes:
            return checked, vouched, _fail(seq, f"record seq {seq} named by witness checkpoint of {when} is missing "
                                                f"(log truncated)", rows, **more)
        if hashes[seq] != checkpoint["last_record_hash"]:
            return checked, vouched, _fail(seq, f"record seq {seq} differs from witness checkpoint of {when} "
                                                f"(history rewritten)", rows, **more)
        checked, vouched = checked + 1, max(vouched or 0, seq)
    return checked, vouched, None


def with_sealed_files(result: VerifyResult, connection: duckdb.DuckDBPyConnection, home: Path | None) -> VerifyResult:
    """A verified chain's result, failed at the first sealed API audit file that no longer
    matches its seal (governance/api_audit.py); unchanged without ``home`` or for a broken chain."""
    from crowd_platform.governance.api_audit import verify_sealed_files

    if home is None or not result.ok:
        return result
    checked, problems = verify_sealed_files(connection, Path(home))
    if not problems:
        return replace(result, sealed_files=checked)
    seq, reason = problems[0]
    if len(problems) > 1:
        reason += f"; {len(problems) - 1} more sealed API audit file(s) fail"
    return replace(result, ok=False, first_bad_seq=seq, reason=reason, sealed_files=checked)


def verify_chain(connection: duckdb.DuckDBPyConnection, witness_dir: Location | None = None, *,
                 retention_hours: float | None = None, home: Path | None = None) -> VerifyResult:
    """Recompute the chain; report the first record where it breaks.

    Checks, per record in seq order: seq continues the previous one (no gap), prev_hash is
    the previous record's hash (no insertion, deletion or reordering), record_hash matches
    the content (no change). A missing head must be anchored by a trusted audit.pruned record
    (_check_prune; ``retention_hours`` defaults to the contracts' audit retention). Then every
    witness checkpoint must name a record that still exists with the same hash (no truncation,
    no rewrite of history before the checkpoint). With ``home`` (CROWD_HOME), every sealed API
    audit file must still match its seal (with_sealed_files).
    """
    rows = connection.execute(
        "SELECT seq, recorded_at, actor, purpose, action, object_kind, object_id, run_id, details, "
        "prev_hash, record_hash FROM audit_log ORDER BY seq"
    ).fetchall()
    checkpoints = read_checkpoints(witness_dir)
    if not rows:
        if checkpoints:
            return VerifyResult(False, int(checkpoints[0]["last_seq"]), "audit log is empty but witness checkpoints exist", 0)
        return VerifyResult(True, None, None, 0)

    expected_seq, expected_prev = 1, GENESIS_HASH
    first_seq = rows[0][0]
    prune = _pruned_anchor(rows, first_seq) if first_seq != 1 else None
    if first_seq != 1:
        # Only a recorded pruning may remove the head of the chain.
        if prune is None:
            return _fail(1, f"records before seq {first_seq} are missing (no audit.pruned record covers them)", rows)
        expected_seq, expected_prev = prune.through_seq + 1, prune.through_hash

    hashes, broken = _walk(rows, expected_seq, expected_prev)
    if broken is not None:
        return broken
    if prune is not None:
        hours = retention_hours if retention_hours is not None else audit_retention_hours()
        reason = _check_prune(prune, checkpoints, hashes, hours)
        if reason is not None:
            return _fail(prune.seq, reason, rows)
    checked, vouched, failed = _check_witness(rows, hashes, checkpoints, prune)
    if failed is not None:
        return failed
    result = VerifyResult(True, None, None, len(rows), rows[-1][0], rows[-1][10], checked, first_seq, vouched)
    return with_sealed_files(result, connection, home)


def witness_warnings(witness: Location, home: Path) -> tuple[str, ...]:
    """A warning when the witness lives where whoever can rewrite the warehouse can rewrite it too."""
    if storage.is_local(witness) and Path(witness).resolve().is_relative_to(Path(home).resolve()):
        return ("witness is inside CROWD_HOME: set CROWD_WITNESS or governance.witness_path to a place outside it",)
    return ()


def _append_durably(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _publish(witness: Location, checkpoint: dict[str, Any]) -> None:
    """Locally: the day's file (atomic replace) and a line appended to the JSONL. On an object
    store, which cannot append: the day's object and one object per checkpoint."""
    line = json.dumps(checkpoint, sort_keys=True)
    storage.write_bytes(witness / f"{checkpoint['date']}.json", (line + "\n").encode("utf-8"))
    if storage.is_local(witness):
        _append_durably(witness / CHECKPOINTS_FILE, line)
        return
    stamp = checkpoint["created_at"].replace(":", "").replace("-", "")
    storage.write_bytes(witness / CHECKPOINT_OBJECTS / f"{int(checkpoint['last_seq']):012d}-{stamp}.json",
                        (line + "\n").encode("utf-8"))


def write_checkpoint(connection: duckdb.DuckDBPyConnection, witness_dir: Location, day: date | None = None,
                     result: VerifyResult | None = None, created_at: datetime | None = None) -> dict[str, Any]:
    """Export a checkpoint (date, first and last seq, last record_hash, count) to the witness.

    Refuses to checkpoint a broken chain: a witness must only ever vouch for a verified log.
    ``created_at`` (default now) is for tests that need an old checkpoint.
    """
    result = result or verify_chain(connection, witness_dir)
    if not result.ok:
        raise ValueError(f"audit chain does not verify: {result.summary()}")
    moment = (created_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    day = day or moment.date()
    checkpoint = {
        "date": day.isoformat(),
        "first_seq": result.first_seq or 0,
        "last_seq": result.last_seq or 0,
        "last_record_hash": result.last_hash or GENESIS_HASH,
        "count": result.records,
        "created_at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    storage.ensure_dir(witness_dir)
    _publish(witness_dir, checkpoint)
    return checkpoint


def result_dict(result: VerifyResult) -> dict[str, Any]:
    return {**asdict(result), "status": result.status}


def record_checkpoint(connection: duckdb.DuckDBPyConnection, witness_dir: Location, result: VerifyResult, *,
                      purpose: str, actor: str | None, run_id: str | None = None) -> dict[str, Any]:
    """Write the witness checkpoint of a verified chain and record it in the chain itself, so the
    asset and the CLI leave the same trace."""
    from crowd_platform.common import audit

    checkpoint = write_checkpoint(connection, witness_dir, result=result)
    audit.append(connection, "audit.checkpoint", purpose=purpose, actor=actor, object_kind="witness",
                 object_id=checkpoint["date"], run_id=run_id, details=checkpoint)
    return checkpoint
