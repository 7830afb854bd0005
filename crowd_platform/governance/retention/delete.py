"""Deleted means gone: a file is unlinked and its directory fsynced so the removal survives a
crash, and the warehouse is rebuilt into a fresh file after its DELETEs because DELETE +
CHECKPOINT (even VACUUM) leaves the deleted values in the row group's pages (measured:
docs/audit.md). Every deleted object gets a certificate (table deletion_certificates, modeled
on NIST SP 800-88 Rev.1) in the same transaction as the rows it removes.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from crowd_platform.common import audit
from crowd_platform.common import storage
from crowd_platform.common.crashpoints import crash_point
from crowd_platform.common.erasure import (certificate_row, combined_digest, fsync_directory, insert_certificates,
                                           new_certificate_id, parquet_rows, remove_path)
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import connect, insert_rows, transaction
from crowd_platform.governance.api_audit import seal_closed_files
from crowd_platform.governance.audit_chain import (
    PRUNE_ACTION,
    checkpoint_time,
    format_recorded_at,
    read_checkpoints,
    verify_chain,
)
from crowd_platform.governance.retention.plan import Deletion, RetentionOutcome, plan_deletions, resolve
from crowd_platform.governance.retention.policy import (
    FILE_METHOD,
    ROWS_METHOD,
    SAMPLE_KEYS_PER_FILE,
    Progress,
    RetentionPolicy,
    load_policy,
)
from crowd_platform.governance.retention.verify import verify_and_record


def _sample_keys(path: Path) -> list[str]:
    """A few subscriber keys of a lake file, kept in memory to prove later they are gone.

    pyarrow reads one column of the first row group: a new DuckDB connection per file cost
    ~17 ms each, minutes for a demo's thousands of lake files."""
    if not path.is_file() or path.suffix != ".parquet":
        return []
    try:
        parquet = pq.ParquetFile(path if storage.is_local(path) else storage.open_binary(path))
        # A cell list's lake file has no subscriber column: nothing personal to sample (it
        # crashed sunset, which deletes cell lists too, with an IndexError).
        if parquet.metadata.num_row_groups == 0 or "subscriber_key" not in parquet.schema_arrow.names:
            return []
        column = parquet.read_row_group(0, columns=["subscriber_key"]).column(0)
        keys: list[str] = []
        for value in column.to_pylist():
            if value and value not in keys:
                keys.append(value)
                if len(keys) >= SAMPLE_KEYS_PER_FILE:
                    break
        return keys
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return []


def compact_warehouse(path: Path) -> dict[str, Any]:
    """Rebuild the DuckDB file so deleted values are not left in free or partly-deleted pages.

    ATTACH a fresh file, COPY FROM DATABASE, fsync, atomic os.replace, remove the old WAL.
    Needs exclusive access: callers hold the warehouse pool (Dagster) or run from the CLI.
    """
    started = time.perf_counter()
    bytes_before = path.stat().st_size if path.exists() else 0
    fresh = path.with_name(f".{path.name}.compact")
    for leftover in (fresh, Path(f"{fresh}.wal")):
        if leftover.exists():
            leftover.unlink()
    with connect(path) as connection:
        connection.execute("CHECKPOINT")
        database = connection.execute("SELECT current_database()").fetchone()[0]
        connection.execute(f"ATTACH '{fresh}' AS compacted")
        connection.execute(f'COPY FROM DATABASE "{database}" TO compacted')
        connection.execute("DETACH compacted")
    with open(fresh, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(fresh, path)
    wal = Path(f"{path}.wal")
    if wal.exists():
        wal.unlink()
    fsync_directory(path.parent)
    return {"method": "COPY FROM DATABASE to fresh file + atomic replace", "bytes_before": bytes_before,
            "bytes_after": path.stat().st_size, "seconds": round(time.perf_counter() - started, 3)}


def _rows_digest(connection: duckdb.DuckDBPyConnection, deletion: Deletion) -> tuple[int, str, int]:
    count, digest, size = connection.execute(
        f"SELECT count(*), sha256(coalesce(string_agg(row_text, chr(10) ORDER BY row_text), '')), "
        f"coalesce(sum(length(row_text)), 0) FROM (SELECT CAST(t AS VARCHAR) AS row_text "
        f'FROM "{deletion.table}" t WHERE {deletion.where_sql})',
        deletion.where_params,
    ).fetchone()
    return int(count), digest, int(size)


def apply_retention(
    settings: Settings,
    as_of: datetime | None = None,
    *,
    dry_run: bool = False,
    sunset: bool = False,
    keep_aggregates: bool = False,
    actor: str | None = None,
    purpose: str | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> RetentionOutcome:
    """Delete everything past retention (or, for sunset, every personal datum) with certificates."""
    say = progress or (lambda message: None)
    as_of = (as_of or datetime.now(timezone.utc)).astimezone(timezone.utc)
    actor = actor or audit.default_actor()
    purpose = purpose or settings.purpose
    mode = "sunset" if sunset else "retention"
    policy = load_policy(settings)
    outcome = RetentionOutcome(as_of, dry_run, mode, [])

    with connect(settings.warehouse_path) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        if not dry_run:
            # Never delete an unsealed API audit file: seal the closed ones first (own transaction).
            sealed = seal_closed_files(connection, settings.home, purpose=purpose, actor=actor, run_id=run_id,
                                       now=min(as_of, datetime.now(timezone.utc)))
            if sealed.sealed:
                outcome.notes.append(f"api_audit: {len(sealed.sealed)} closed file(s) sealed before planning")
        planned = plan_deletions(connection, settings, policy, as_of, sunset, keep_aggregates, dry_run=dry_run,
                                 notes=outcome.notes)
        outcome.deletions = planned
        say(f"{mode} as of {as_of:%Y-%m-%dT%H:%M:%SZ}: {len(planned)} object(s) to delete")
        _measure(connection, planned)
        if dry_run:
            return outcome

        # Files first: if the process dies before the warehouse commit, the next run finds the
        # files absent and still certifies them (content hash unknown then).
        _delete_files(planned, say)
        _delete_rows_and_certify(connection, settings, policy, outcome, actor, purpose, run_id, sunset)

    if planned or outcome.audit_pruned_through:
        say("compacting the warehouse so deleted rows leave no bytes behind")
        outcome.compaction = compact_warehouse(settings.warehouse_path)

    verify_and_record(settings, outcome, actor, purpose, run_id)
    say(f"{mode} done: {len(planned)} certificate(s), {len(outcome.failed)} failed verification")
    return outcome


def _measure(connection: duckdb.DuckDBPyConnection, planned: list[Deletion]) -> None:
    """Rows, bytes and sha256 of every planned object, taken while its content still exists."""
    for deletion in planned:
        if deletion.table:
            deletion.rows, deletion.content_sha256, deletion.bytes = _rows_digest(connection, deletion)
        else:
            deletion.content_sha256, deletion.bytes = combined_digest(deletion.paths)


def _delete_files(planned: list[Deletion], say: Progress) -> None:
    """Remove every file object; a lake file's keys and row count are read just before."""
    for number, deletion in enumerate(d for d in planned if not d.table):
        if deletion.object_kind == "lake_partition":
            deletion.sample_keys = [k for p in deletion.paths for k in _sample_keys(p)]
            deletion.rows = parquet_rows(deletion.paths)
        for path in deletion.paths:
            remove_path(path)
            crash_point("retention_deleting")
        if number and number % 100 == 0:
            say(f"  deleted {number} file object(s)")


def _delete_rows_and_certify(connection: duckdb.DuckDBPyConnection, settings: Settings, policy: RetentionPolicy,
                             outcome: RetentionOutcome, actor: str, purpose: str, run_id: str | None,
                             sunset: bool) -> None:
    """In one transaction: delete the rows, mark emptied drops deleted, certify every object and
    (outside sunset) prune the audit log, so a crash leaves all of it or none."""
    planned = outcome.deletions
    deleted_drop_ids = _drops_fully_deleted(connection, settings, planned)
    with transaction(connection):
        for deletion in planned:
            if deletion.table:
                connection.execute(f'DELETE FROM "{deletion.table}" WHERE {deletion.where_sql}', deletion.where_params)
        if deleted_drop_ids:
            connection.executemany("UPDATE drops SET status = 'deleted' WHERE drop_id = ?", [[d] for d in deleted_drop_ids])
        outcome.drops_marked_deleted = len(deleted_drop_ids)
        _certify(connection, planned, outcome.mode, actor, purpose, run_id)
        if not sunset:
            outcome.audit_pruned_through = _prune_audit_log(connection, settings, policy, outcome.as_of, actor,
                                                            purpose, run_id, outcome)


def _certify(connection: duckdb.DuckDBPyConnection, planned: list[Deletion], mode: str, actor: str, purpose: str,
             run_id: str | None) -> None:
    """A certificate and an audit record per object; verification is filled in after compaction."""
    deleted_at = datetime.now(timezone.utc)
    for deletion in planned:
        deletion.certificate_id = new_certificate_id()
    insert_certificates(connection, [certificate_row(
        certificate_id=deletion.certificate_id, object_kind=deletion.object_kind, object_id=deletion.object_id,
        policy=deletion.rule.policy, period=deletion.rule.period, method=ROWS_METHOD if deletion.table else FILE_METHOD,
        deleted_at=deleted_at, verification="pending: compaction", actor=actor, run_id=run_id,
        window_start=deletion.window_start, partition_key=deletion.partition_key, rows=deletion.rows,
        size=deletion.bytes, content_sha256=deletion.content_sha256) for deletion in planned])
    for deletion in planned:
        audit.append(connection, f"{mode}.deleted", purpose=purpose, actor=actor, object_kind=deletion.object_kind,
                     object_id=deletion.object_id, run_id=run_id,
                     details={"certificate_id": deletion.certificate_id, "rows": deletion.rows,
                              "bytes": deletion.bytes, "policy": deletion.rule.policy, "period": deletion.rule.period})


def _drops_fully_deleted(connection: duckdb.DuckDBPyConnection, settings: Settings, planned: list[Deletion]) -> list[str]:
    """Drops none of whose files remain: their row becomes status 'deleted'. A cell list whose raw
    copy expired keeps its lake file (the registry's source), so it stays 'accepted'."""
    touched = sorted({d.drop_id for d in planned if d.drop_id})
    done = []
    for drop_id in touched:
        raw_path, lake_path, quarantine_path = connection.execute(
            "SELECT raw_path, lake_path, quarantine_path FROM drops WHERE drop_id = ?", [drop_id]
        ).fetchone()
        remaining = [p for p in (resolve(settings, raw_path), resolve(settings, lake_path),
                                 resolve(settings, quarantine_path), settings.staging / drop_id)
                     if p is not None and p.exists()]
        if not remaining:
            done.append(drop_id)
    return done


def _witnessed_prune_limit(settings: Settings, cutoff: datetime) -> int | None:
    """Highest seq a witness checkpoint older than the cutoff vouches for: verification trusts a
    prune only through such a seq (governance/audit_chain.py _check_prune)."""
    seqs = [int(c["last_seq"]) for c in read_checkpoints(settings.witness)
            if (moment := checkpoint_time(c)) is not None and moment < cutoff]
    return max(seqs) if seqs else None


def _prune_audit_log(connection: duckdb.DuckDBPyConnection, settings: Settings, policy: RetentionPolicy,
                     as_of: datetime, actor: str, purpose: str, run_id: str | None, outcome: RetentionOutcome) -> int | None:
    """Delete audit records past retention that a witness checkpoint older than the retention
    covers, leaving an audit.pruned record that anchors the chain."""
    rule_entry = next((t for t in policy.tables if t.table == "audit_log"), None)
    if rule_entry is None:
        return None
    # Never later than now: the prune record is dated now and verification measures from it.
    cutoff = min(as_of, datetime.now(timezone.utc)) - timedelta(hours=rule_entry.rule.hours)
    last = connection.execute(
        "SELECT max(seq) FROM audit_log WHERE recorded_at < ?::TIMESTAMPTZ", [cutoff]
    ).fetchone()[0]
    if last is None:
        return None
    witnessed = _witnessed_prune_limit(settings, cutoff)
    if witnessed is None:
        outcome.notes.append("audit_log not pruned: no witness checkpoint older than the audit retention covers it")
        return None
    last = min(int(last), witnessed)
    if last < connection.execute("SELECT min(seq) FROM audit_log").fetchone()[0]:
        return None
    result = verify_chain(connection, settings.witness, retention_hours=rule_entry.rule.hours, home=settings.home)
    if not result.ok:
        # Never erase evidence of tampering by pruning it away (a sealed API audit file that no
        # longer matches its seal included: pruning would remove the seal).
        outcome.notes.append(f"audit_log not pruned: chain fails at seq {result.first_bad_seq}")
        return None
    through_hash, through_at, count = connection.execute(
        "SELECT (SELECT record_hash FROM audit_log WHERE seq = ?), (SELECT recorded_at FROM audit_log WHERE seq = ?), "
        "count(*) FROM audit_log WHERE seq <= ?", [last, last, last]
    ).fetchone()
    connection.execute("DELETE FROM audit_log WHERE seq <= ?", [last])
    certificate_id = f"cert-{uuid.uuid4().hex[:20]}"
    insert_rows(connection, "deletion_certificates", {
        "certificate_id": certificate_id,
        "object_kind": "warehouse_rows",
        "object_id": f"audit_log/seq<={last}",
        "window_start": None,
        "partition_key": None,
        "rows": count,
        "bytes": None,
        "content_sha256": through_hash,
        "policy": rule_entry.rule.policy,
        "retention_period": rule_entry.rule.period,
        "deleted_at": datetime.now(timezone.utc),
        "method": ROWS_METHOD,
        "verification": "pending: compaction",
        "actor": actor,
        "run_id": run_id,
    })
    audit.append(connection, PRUNE_ACTION, purpose=purpose, actor=actor, object_kind="warehouse_rows",
                 object_id="audit_log", run_id=run_id,
                 details={"through_seq": last, "through_hash": through_hash, "through_recorded_at": format_recorded_at(through_at),
                          "records": count, "certificate_id": certificate_id})
    outcome.notes.append(f"audit_log pruned through seq {last} ({count} records)")
    return int(last)
