"""API access records sealed into the warehouse's hash chain (decision 017, docs/audit.md section 5).

The API server writes one JSON line per request to ``CROWD_HOME/api_audit/YYYY-MM-DD.<pid>.jsonl``
and never opens the warehouse read-write, so its files live outside the chain. Once a file's
UTC day is over (plus ``CLOSE_GRACE`` for a batch queued just before midnight), a governance step
seals it: one ``api_audit.sealed`` record in the audit log naming the file, its byte size, sha256,
line count, malformed-line count and first/last request time. Never a line's content: a seal
holds counts, hashes and times only.

From then on ``audit verify`` (``verify_sealed_files``) re-hashes every sealed file that no
retention deletion record follows: a changed, truncated or deleted file fails with one line
naming the file. Retention deletes sealed files past the ``api_audit`` period of
``data_contracts/platform_datasets.yaml`` with a certificate (object kind ``api_audit``), and
never a file that is not sealed or no longer matches its seal.

What a seal cannot prove: anything done to a file before it was sealed (at most a day and the
time until the next ``audit_log`` run), and a file forged whole for a past day before its seal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.api.access_log import AUDIT_FOLDER, FILE_NAME, audit_dir
from crowd_platform.common import audit
from crowd_platform.common.timeutil import TimeParseError, parse_utc
from crowd_platform.common.warehouse import transaction

SEAL_ACTION = "api_audit.sealed"
OBJECT_KIND = "api_audit"          # audit records and deletion certificates of these files
ELEMENT = "api_audit"              # the retention element in data_contracts/platform_datasets.yaml
DELETED_ACTIONS = ("retention.deleted", "sunset.deleted")
# A request queued just before midnight is written within the writer's flush interval (0.5 s):
# a file is closed only this long after its UTC day ended.
CLOSE_GRACE = timedelta(minutes=5)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class AuditFile:
    path: Path
    object_id: str     # api_audit/<name>: relative to CROWD_HOME, as recorded in the chain
    day: date

    @property
    def day_end(self) -> datetime:
        return datetime.combine(self.day + timedelta(days=1), time.min, tzinfo=timezone.utc)

    def closed(self, now: datetime) -> bool:
        """Its UTC day is over (and the grace after it): the server writes no more to it."""
        return self.day_end + CLOSE_GRACE <= now


def audit_file(home: Path, object_id: str) -> AuditFile | None:
    """The file a seal names, or None for a name the writer never produces."""
    folder, _, name = object_id.partition("/")
    match = FILE_NAME.match(name)
    if folder != AUDIT_FOLDER or not match:
        return None
    try:
        day = date.fromisoformat(match.group(1))
    except ValueError:
        return None
    return AuditFile(audit_dir(home) / name, object_id, day)


def audit_files(home: Path) -> tuple[list[AuditFile], int]:
    """The writer's files, oldest day first, and how many other entries the folder holds."""
    folder = audit_dir(home)
    if not folder.is_dir():
        return [], 0
    found, other = [], 0
    for path in sorted(folder.iterdir()):
        entry = audit_file(home, f"{AUDIT_FOLDER}/{path.name}") if path.is_file() and not path.is_symlink() else None
        if entry is None:
            other += 1
        else:
            found.append(entry)
    return sorted(found, key=lambda f: (f.day, f.object_id)), other


@dataclass(frozen=True)
class Measure:
    """What a seal records: sizes, hash, counts and times, nothing of a line's content."""

    bytes: int
    sha256: str
    lines: int
    malformed_lines: int = 0
    first_at: str | None = None
    last_at: str | None = None

    def details(self, entry: AuditFile) -> dict[str, Any]:
        return {"file": entry.object_id, "day": entry.day.isoformat(), "bytes": self.bytes, "sha256": self.sha256,
                "lines": self.lines, "malformed_lines": self.malformed_lines,
                "first_at": self.first_at, "last_at": self.last_at}


def _request_time(line: bytes) -> datetime | None:
    """The ``at`` of a well-formed record; None for anything else (the line is then malformed)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):   # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(record, dict) or not isinstance(record.get("at"), str):
        return None
    try:
        return parse_utc(record["at"], what="request time")
    except TimeParseError:
        return None


def measure(path: Path, *, parse: bool = True) -> Measure:
    """Stream a file once: sha256 and size of its bytes as they are, lines (a last line without
    a newline counts), and with ``parse`` the malformed lines and the first and last request time."""
    digest, size, lines, malformed = hashlib.sha256(), 0, 0, 0
    first = last = None
    with open(path, "rb") as handle:
        for line in handle:  # binary iteration splits on b"\n" only
            digest.update(line)
            size += len(line)
            lines += 1
            if not parse:
                continue
            moment = _request_time(line)
            if moment is None:
                malformed += 1
                continue
            first = moment if first is None or moment < first else first
            last = moment if last is None or moment > last else last
    stamp = (lambda m: m.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if m else None)
    return Measure(size, digest.hexdigest(), lines, malformed, stamp(first), stamp(last))


@dataclass(frozen=True)
class Seal:
    seq: int
    details: dict[str, Any]
    deleted_seq: int | None = None   # a retention deletion record after the seal

    @property
    def active(self) -> bool:
        return self.deleted_seq is None


def seals(connection: duckdb.DuckDBPyConnection) -> dict[str, Seal]:
    """object_id -> its latest seal in the chain, with the deletion that followed it, if any."""
    latest: dict[str, Seal] = {}
    for seq, object_id, details in connection.execute(
        "SELECT seq, object_id, details FROM audit_log WHERE action = ? AND object_kind = ? ORDER BY seq",
        [SEAL_ACTION, OBJECT_KIND],
    ).fetchall():
        try:
            parsed = json.loads(details or "{}")
        except ValueError:
            parsed = {}
        latest[object_id] = Seal(int(seq), parsed if isinstance(parsed, dict) else {})
    placeholders = ", ".join("?" for _ in DELETED_ACTIONS)
    for object_id, seq in connection.execute(
        f"SELECT object_id, max(seq) FROM audit_log WHERE object_kind = ? AND action IN ({placeholders}) GROUP BY ALL",
        [OBJECT_KIND, *DELETED_ACTIONS],
    ).fetchall():
        seal = latest.get(object_id)
        if seal is not None and int(seq) > seal.seq:
            latest[object_id] = Seal(seal.seq, seal.details, int(seq))
    return latest


@dataclass
class SealOutcome:
    sealed: list[dict[str, Any]] = field(default_factory=list)   # the new seal records' details
    already_sealed: int = 0
    open_files: int = 0
    unreadable: list[str] = field(default_factory=list)          # object ids
    other_entries: int = 0

    def summary(self) -> dict[str, Any]:
        """Counts only (Dagster metadata, logs)."""
        return {"sealed": len(self.sealed), "already_sealed": self.already_sealed, "open": self.open_files,
                "unreadable": len(self.unreadable), "malformed_lines": sum(s["malformed_lines"] for s in self.sealed),
                "other_entries": self.other_entries}


def seal_closed_files(connection: duckdb.DuckDBPyConnection, home: Path, *, purpose: str, actor: str | None = None,
                      run_id: str | None = None, now: datetime | None = None) -> SealOutcome:
    """Seal every closed, unsealed API audit file: one audit record each, in one transaction.

    Idempotent: a file with a seal (and no deletion after it) is left alone. A malformed line
    is counted and sealed as it is; an unreadable file is named in ``unreadable`` and skipped."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    files, other = audit_files(home)
    outcome = SealOutcome(other_entries=other)
    with transaction(connection):
        existing = seals(connection)
        for entry in files:
            if not entry.closed(now):
                outcome.open_files += 1
                continue
            seal = existing.get(entry.object_id)
            if seal is not None and seal.active:
                outcome.already_sealed += 1
                continue
            try:
                details = measure(entry.path).details(entry)
            except OSError:
                outcome.unreadable.append(entry.object_id)
                continue
            audit.append(connection, SEAL_ACTION, purpose=purpose, actor=actor, object_kind=OBJECT_KIND,
                         object_id=entry.object_id, run_id=run_id, details=details)
            outcome.sealed.append(details)
    return outcome


def check_sealed(entry: AuditFile, seal: Seal) -> str | None:
    """Why the file no longer matches its seal (one line, counts and hashes only), or None."""
    sealed_bytes, sealed_lines = seal.details.get("bytes"), seal.details.get("lines")
    if not entry.path.is_file():
        return f"sealed API audit file {entry.object_id} is missing (no deletion record follows its seal)"
    try:
        now = measure(entry.path, parse=False)
    except OSError:
        return f"sealed API audit file {entry.object_id} cannot be read"
    if now.sha256 == seal.details.get("sha256") and now.bytes == sealed_bytes:
        return None
    return (f"sealed API audit file {entry.object_id} changed after its seal: sealed {sealed_bytes} bytes / "
            f"{sealed_lines} lines, now {now.bytes} bytes / {now.lines} lines, sha256 differs")


def verify_sealed_files(connection: duckdb.DuckDBPyConnection, home: Path) -> tuple[int, list[tuple[int, str]]]:
    """Re-hash every sealed file no deletion record follows: (files checked, [(seal seq, reason)])."""
    checked, problems = 0, []
    for object_id, seal in sorted(seals(connection).items(), key=lambda item: item[1].seq):
        if not seal.active:
            continue
        checked += 1
        entry = audit_file(home, object_id)
        reason = (check_sealed(entry, seal) if entry is not None
                  else f"seal record names {object_id!r}, which is not an API audit file name")
        if reason is not None:
            problems.append((seal.seq, reason))
    return checked, problems
