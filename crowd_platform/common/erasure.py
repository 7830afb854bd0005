"""Deletion with proof: every removal of a drop's personal-data file (raw copy, staging copy,
lake file, quarantine copy) goes through ``delete_certified``, which hashes the object while it
exists, writes its deletion certificate (table ``deletion_certificates``, the same named columns
retention writes) and an audit record in ONE transaction with the caller's own warehouse change,
then unlinks + fsyncs and records the verification. Retention (governance) and ingestion both
use it, hence its place in common/.

Order: commit, then unlink. A crash in between leaves a certificate saying "pending: unlink"
(the governance check ``certificates_verified`` flags it) and a file no drops row points to,
which retention's orphan sweep deletes with its own certificate.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from crowd_platform.common import audit, storage
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import insert_rows, transaction

FILE_METHOD = "unlink+fsync(dir)"
# Deletions no retention period decides: the policy names the platform contract and the reason.
DELETION_POLICY = "platform-datasets#deletion"
IMMEDIATE = "0h"
PENDING = "pending: unlink"
DELETED_ACTION = "object_deleted"

# Reasons (the certificate's policy is DELETION_POLICY + ":" + reason).
RAW_MSISDN = "raw msisdn"
QUARANTINE_RELEASED = "quarantine released"
QUARANTINE_REJECTED = "quarantine rejected"
QUARANTINED_STAGING = "quarantined (staged copy)"
PUBLISHED_STAGING = "published (staging scratch)"
DUPLICATE_OF_DELETED = "identical bytes to deleted drop"


def superseded_reason(delivery: Any) -> str:
    return f"superseded by delivery {delivery}"


def reason_policy(reason: str) -> str:
    return f"{DELETION_POLICY}:{reason}"


# ---------------------------------------------------------------- measuring and removing
def fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def content_digest(path: Path) -> tuple[str | None, int]:
    """sha256 of a file's bytes (a symlink: of its target text, never followed), or of a
    folder's (relative name, file sha256) list; total bytes. (None, 0) when absent."""
    if storage.is_local(path) and path.is_symlink():
        target = os.readlink(path).encode("utf-8", "surrogateescape")
        return hashlib.sha256(target).hexdigest(), len(target)
    if path.is_file():
        return storage.sha256_and_size(path)
    if path.is_dir():
        digest, size = hashlib.sha256(), 0
        for child in storage.files_under(path):
            child_sha, child_size = content_digest(child)
            digest.update(f"{child.relative_to(path)}\0{child_sha}\n".encode())
            size += child_size
        return digest.hexdigest(), size
    return None, 0


def combined_digest(paths: Iterable[Path]) -> tuple[str | None, int]:
    """One digest for an object made of several paths (one path: its own digest)."""
    digests = [content_digest(path) for path in paths]
    present = [sha for sha, _ in digests if sha]
    size = sum(size for _, size in digests)
    if len(present) == 1:
        return present[0], size
    return (hashlib.sha256("".join(present).encode()).hexdigest() if present else None), size


def parquet_rows(paths: Iterable[Path]) -> int | None:
    """Row count from the Parquet footers (no data read); None without a readable Parquet file."""
    files = [p for p in paths if p.is_file() and p.suffix == ".parquet"]  # local or object store
    if not files:
        return None
    try:
        return sum(pq.ParquetFile(path if storage.is_local(path) else storage.open_binary(path)).metadata.num_rows
                   for path in files)
    except (OSError, pa.ArrowException):
        return None


def remove_path(path: Path) -> None:
    """Unlink a file, a symlink or a folder tree, then fsync the parent so the removal is durable.

    On an object store every object under the prefix is deleted (DeleteObjects)."""
    if not storage.is_local(path):
        storage.remove_tree(path)
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if path.parent.exists():
        fsync_directory(path.parent)


def _present(path: Path) -> bool:
    return path.exists() or (storage.is_local(path) and path.is_symlink())


# ---------------------------------------------------------------- the certificate
def new_certificate_id() -> str:
    return f"cert-{uuid.uuid4().hex[:20]}"


def certificate_row(*, certificate_id: str, object_kind: str, object_id: str, policy: str, period: str, method: str,
                    deleted_at: datetime, verification: str, actor: str, run_id: str | None,
                    window_start: datetime | None = None, partition_key: str | None = None, rows: int | None = None,
                    size: int | None = None, content_sha256: str | None = None) -> dict[str, Any]:
    """The one certificate format (named columns of deletion_certificates, NIST SP 800-88 style)."""
    return {"certificate_id": certificate_id, "object_kind": object_kind, "object_id": object_id,
            "window_start": window_start, "partition_key": partition_key, "rows": rows, "bytes": size,
            "content_sha256": content_sha256, "policy": policy, "retention_period": period, "deleted_at": deleted_at,
            "method": method, "verification": verification, "actor": actor, "run_id": run_id}


def insert_certificates(connection: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    insert_rows(connection, "deletion_certificates", rows)


@dataclass
class DeletedObject:
    """One object to delete: a drop's file(s) of one kind. ``object_id`` is the drop_id, which
    is how lineage finds a drop's certificates (governance.lineage.DROP_OBJECT_KINDS)."""

    object_kind: str                 # raw_drop | lake_partition | quarantine | staging | landing
    object_id: str
    paths: list[Path]
    window_start: datetime | None = None
    partition_key: str | None = None
    certificate_id: str | None = None
    verification: str = PENDING
    measured: dict[str, Any] = field(default_factory=dict)


def delete_certified(settings: Settings, connection: duckdb.DuckDBPyConnection, objects: list[DeletedObject], *,
                     reason: str, run_id: str | None, actor: str | None = None,
                     changes: Callable[[], None] | None = None) -> list[DeletedObject]:
    """Delete objects with proof: measure them, then in one transaction run ``changes`` (the
    caller's warehouse change), insert a certificate and an audit record per object; after the
    commit unlink + fsync and record each certificate's verification. Objects whose paths are
    all absent get no certificate (nothing was deleted). Returns the certified objects."""
    actor = actor or audit.default_actor()
    present = [o for o in objects if any(_present(path) for path in o.paths)]
    for item in present:
        sha, size = combined_digest(item.paths)
        item.measured = {"sha256": sha, "bytes": size, "rows": parquet_rows(item.paths)}
        item.certificate_id = new_certificate_id()
    deleted_at = datetime.now(timezone.utc)
    with transaction(connection):
        if changes is not None:
            changes()
        if present:
            insert_certificates(connection, [certificate_row(
                certificate_id=item.certificate_id, object_kind=item.object_kind, object_id=item.object_id,
                policy=reason_policy(reason), period=IMMEDIATE, method=FILE_METHOD, deleted_at=deleted_at,
                verification=PENDING, actor=actor, run_id=run_id, window_start=item.window_start,
                partition_key=item.partition_key, rows=item.measured["rows"], size=item.measured["bytes"],
                content_sha256=item.measured["sha256"]) for item in present])
        for item in present:
            audit.append(connection, DELETED_ACTION, purpose=settings.purpose, actor=actor, object_kind=item.object_kind,
                         object_id=item.object_id, run_id=run_id,
                         details={"certificate_id": item.certificate_id, "reason": reason, "bytes": item.measured["bytes"],
                                  "rows": item.measured["rows"], "paths": [settings.stored(p) for p in item.paths]})
    for item in present:
        for path in item.paths:
            remove_path(path)
    _record_verification(connection, present)
    return present


def _record_verification(connection: duckdb.DuckDBPyConnection, certified: list[DeletedObject]) -> None:
    for item in certified:
        left = [path for path in item.paths if _present(path)]
        item.verification = f"failed: {len(left)} path(s) still present" if left else "verified: absent"
    if certified:
        connection.executemany("UPDATE deletion_certificates SET verification = ? WHERE certificate_id = ?",
                               [[item.verification, item.certificate_id] for item in certified])
