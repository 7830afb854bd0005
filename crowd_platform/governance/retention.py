"""Retention: delete what is past its period, prove it, and leave no bytes behind.

Periods come from the data contracts only: ``data_contracts/platform_datasets.yaml`` declares
every dataset's retention (slaProperties) and, per warehouse table, which column dates a row;
for an operator's drops the operator's own contract (``events.subscriber_key``) wins.

"Deleted means gone":
- files are unlinked and their directory fsynced, then checked absent;
- warehouse rows are DELETEd, then the DuckDB file is rebuilt (``COPY FROM DATABASE`` into a
  fresh file, atomically swapped in), because DELETE + CHECKPOINT (even VACUUM) leaves the
  deleted values in the row group's pages (measured: docs/audit.md);
- every deleted object gets a certificate (table deletion_certificates, modeled on NIST SP
  800-88 Rev.1): what, window, rows, bytes, sha256 of the content before deletion, policy
  and period, when, how, and the verification result after compaction.

The age of drop data is measured from the drop's window_end (the moment the events
describe), of warehouse rows from the contract's ``retention_column``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from crowd_platform.common import audit
from crowd_platform.common import storage
from crowd_platform.governance.audit_chain import PRUNE_ACTION, verify_chain
from crowd_platform.common.contracts import Contract, load_contracts, operator_contracts
from crowd_platform.governance.privacy_scan import contains_any
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import connect, transaction
from crowd_platform.common.crashpoints import crash_point
from crowd_platform.common.timeutil import parse_utc_or_none

PLATFORM_CONTRACT_ID = "platform-datasets"
DROP_ELEMENT = "events.subscriber_key"
FILE_METHOD = "unlink+fsync(dir)"
ROWS_METHOD = "DELETE + rebuild (COPY FROM DATABASE to fresh file, atomic replace)"
SAMPLE_KEYS_PER_FILE = 5

Progress = Callable[[str], None]


# ---------------------------------------------------------------- policy (from contracts)
@dataclass(frozen=True)
class Rule:
    contract_id: str
    element: str
    hours: float

    @property
    def policy(self) -> str:
        return f"{self.contract_id}#retention:{self.element}"

    @property
    def period(self) -> str:
        hours = self.hours
        if hours >= 24 * 365 and hours % (24 * 365) == 0:
            return f"{int(hours // (24 * 365))}y"
        if hours >= 168 and hours % 168 == 0:
            return f"{int(hours // 168)}w"
        if hours >= 24 and hours % 24 == 0:
            return f"{int(hours // 24)}d"
        return f"{hours:g}h"


@dataclass(frozen=True)
class TableRule:
    table: str
    column: str
    rule: Rule
    published: bool
    keep_at_sunset: bool


@dataclass(frozen=True)
class RetentionPolicy:
    platform: Contract
    operators: dict[str, Contract]
    tables: tuple[TableRule, ...]

    def rule(self, element: str) -> Rule:
        return Rule(self.platform.contract_id, element, self.platform.retention_hours(element))

    def drop_rule(self, operator: str | None) -> Rule:
        """The operator's own contract wins for its drops; the platform's value is the default."""
        contract = self.operators.get(operator or "")
        if contract is not None and DROP_ELEMENT in contract.retention:
            return Rule(contract.contract_id, DROP_ELEMENT, contract.retention[DROP_ELEMENT])
        return self.rule(DROP_ELEMENT)


def _custom(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["property"]: item.get("value") for item in (items or []) if item.get("property")}


def load_policy(settings: Settings) -> RetentionPolicy:
    platform = next((c for c in load_contracts(settings.contracts_dir) if c.contract_id == PLATFORM_CONTRACT_ID), None)
    if platform is None:
        raise ValueError(f"no {PLATFORM_CONTRACT_ID} contract in {settings.contracts_dir}")
    tables = []
    for obj in platform.raw.get("schema") or []:
        custom = _custom(obj.get("customProperties"))
        if custom.get("storage") != "warehouse" or obj["name"] not in platform.retention:
            continue
        tables.append(TableRule(
            table=obj.get("physicalName") or obj["name"],
            column=str(custom["retention_column"]),
            rule=Rule(platform.contract_id, obj["name"], platform.retention[obj["name"]]),
            published=bool(custom.get("published", False)),
            keep_at_sunset=custom.get("sunset") == "keep",
        ))
    return RetentionPolicy(platform, operator_contracts(settings.contracts_dir, "events"), tuple(tables))


# ---------------------------------------------------------------- plan
@dataclass
class Deletion:
    """One object to delete, and after deletion its certificate fields."""

    object_kind: str                 # raw_drop | lake_partition | quarantine | staging | warehouse_rows | outbox
    object_id: str
    rule: Rule
    window_start: datetime | None = None
    partition_key: str | None = None
    paths: list[Path] = field(default_factory=list)
    table: str | None = None
    where_sql: str | None = None     # for warehouse rows: predicate on the table
    where_params: list[Any] = field(default_factory=list)
    drop_id: str | None = None
    rows: int | None = None
    bytes: int | None = None
    content_sha256: str | None = None
    certificate_id: str | None = None
    verification: str = "pending"
    # Sampled subscriber keys, memory only: searched for in the compacted warehouse afterwards.
    sample_keys: list[str] = field(default_factory=list, repr=False)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.object_kind, "object_id": self.object_id, "partition": self.partition_key,
                "rows": self.rows, "bytes": self.bytes, "policy": self.rule.policy, "period": self.rule.period}


@dataclass
class RetentionOutcome:
    as_of: datetime
    dry_run: bool
    mode: str
    deletions: list[Deletion]
    drops_marked_deleted: int = 0
    audit_pruned_through: int | None = None
    compaction: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Deletion]:
        return [d for d in self.deletions if d.verification.startswith("failed")]

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for deletion in self.deletions:
            totals[deletion.object_kind] = totals.get(deletion.object_kind, 0) + 1
        return totals


def _resolve(settings: Settings, value: str | None) -> Path | None:
    """A recorded path under the storage root (a local Path or an object-store location)."""
    return settings.resolve(value)


def _utc(value: Any) -> datetime | None:
    return parse_utc_or_none(value, what="retention time")


def _lake_partition_key(settings: Settings, path: Path) -> str:
    try:
        relative = path.relative_to(settings.lake)
    except ValueError:
        return str(path)
    return "/".join(part for part in relative.parts[:-1])


def _raw_paths(settings: Settings, raw_path: Path) -> list[Path]:
    """The raw copy and its manifest (raw/<sha256><ext> + .manifest.json beside it)."""
    sha_stem = raw_path.name.split(".")[0]
    found = {raw_path}
    if raw_path.parent.exists():
        found.update(p for p in raw_path.parent.glob(f"{sha_stem}*") if p.is_file())
    return sorted(found)


def plan_drops(connection: duckdb.DuckDBPyConnection, settings: Settings, policy: RetentionPolicy,
               as_of: datetime, sunset: bool) -> list[Deletion]:
    rows = connection.execute(
        "SELECT drop_id, operator, feed, status, window_start, window_end, raw_path, lake_path, quarantine_path "
        "FROM drops WHERE status <> 'deleted' ORDER BY window_start, drop_id"
    ).fetchall()
    quarantine_rule = policy.rule("quarantine")
    staging_rule = policy.rule("staging")
    sunset_rule = Rule(policy.platform.contract_id, "sunset", 0)
    planned: list[Deletion] = []
    for drop_id, operator, feed, status, window_start, window_end, raw_path, lake_path, quarantine_path in rows:
        window_end = _utc(window_end) or _utc(window_start) or as_of
        window_start = _utc(window_start)
        drop_rule = policy.drop_rule(operator)

        def expired(rule: Rule) -> bool:
            return sunset or window_end + timedelta(hours=rule.hours) <= as_of

        # Cell lists are not personal data: only events drops (and any quarantined drop) expire.
        personal = feed != "cells" or sunset
        raw = _resolve(settings, raw_path)
        if raw is not None and personal and expired(drop_rule):
            planned.append(Deletion("raw_drop", drop_id, sunset_rule if sunset else drop_rule, window_start,
                                    paths=_raw_paths(settings, raw), drop_id=drop_id))
        lake = _resolve(settings, lake_path)
        if lake is not None and personal and expired(drop_rule):
            planned.append(Deletion("lake_partition", drop_id, sunset_rule if sunset else drop_rule, window_start,
                                    partition_key=_lake_partition_key(settings, lake), paths=[lake], drop_id=drop_id))
        quarantined = _resolve(settings, quarantine_path)
        if quarantined is not None and expired(quarantine_rule):
            planned.append(Deletion("quarantine", drop_id, sunset_rule if sunset else quarantine_rule, window_start,
                                    paths=[quarantined], drop_id=drop_id))
        staging = settings.staging / drop_id
        if staging.exists() and expired(staging_rule):
            planned.append(Deletion("staging", drop_id, sunset_rule if sunset else staging_rule, window_start,
                                    paths=[staging], drop_id=drop_id))
    return planned


def plan_orphans(connection: duckdb.DuckDBPyConnection, settings: Settings, policy: RetentionPolicy,
                 as_of: datetime, sunset: bool) -> list[Deletion]:
    """Files no drops row points to (crash leftovers, unroutable drops): aged by mtime."""
    known: set[str] = set()  # str(): local paths and object URLs alike
    known_ids: set[str] = set()
    for drop_id, raw_path, lake_path, quarantine_path in connection.execute(
        "SELECT drop_id, raw_path, lake_path, quarantine_path FROM drops"
    ).fetchall():
        known_ids.add(drop_id)
        for value in (raw_path, lake_path, quarantine_path):
            path = _resolve(settings, value)
            if path is not None:
                known.add(str(path))
                if value == raw_path:
                    known.update(str(p) for p in _raw_paths(settings, path))
    sunset_rule = Rule(policy.platform.contract_id, "sunset", 0)
    candidates: list[tuple[str, Path, Rule]] = []
    if settings.raw.exists():
        candidates += [("raw_drop", p, policy.rule("raw_drops")) for p in settings.raw.iterdir() if p.is_file()]
    if settings.events_lake.exists():
        candidates += [("lake_partition", p, policy.rule(DROP_ELEMENT)) for p in settings.events_lake.rglob("*") if p.is_file()]
    if settings.quarantine.exists():
        candidates += [("quarantine", p, policy.rule("quarantine")) for p in settings.quarantine.iterdir()]
    if settings.staging.exists():
        candidates += [("staging", p, policy.rule("staging")) for p in settings.staging.iterdir()
                       if p.name not in known_ids]
    planned = []
    for kind, path, rule in candidates:
        if str(path) in known or any(str(parent) in known for parent in path.parents):
            continue
        modified = _modified(path)
        if sunset or modified + timedelta(hours=rule.hours) <= as_of:
            object_id = settings.stored(path)
            planned.append(Deletion(kind, object_id, sunset_rule if sunset else rule, paths=[path],
                                    partition_key=_lake_partition_key(settings, path) if kind == "lake_partition" else None))
    return planned


def _modified(path) -> datetime:
    """Last modification (an object-store "folder" is as new as its newest object)."""
    if storage.is_local(path):
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    times = [storage.mtime_ns(child) for child in storage.files_under(path)]
    return datetime.fromtimestamp(max(times, default=0) / 1e9, timezone.utc)


def plan_tables(connection: duckdb.DuckDBPyConnection, settings: Settings, policy: RetentionPolicy,
                as_of: datetime, sunset: bool, keep_aggregates: bool) -> list[Deletion]:
    """Expired warehouse rows, one certificate per table and UTC day of the dating column."""
    planned = []
    for table_rule in policy.tables:
        if table_rule.table == "audit_log":
            continue  # pruned separately: the chain must stay anchored
        if sunset and (table_rule.keep_at_sunset or (table_rule.published and keep_aggregates)):
            continue
        column = table_rule.column
        if sunset:
            predicate, params = "TRUE", []
            rule = Rule(policy.platform.contract_id, "sunset", 0)
        else:
            predicate, params = f'"{column}" < ?::TIMESTAMPTZ', [as_of - timedelta(hours=table_rule.rule.hours)]
            rule = table_rule.rule
        days = connection.execute(
            f'SELECT CAST(date_trunc(\'day\', "{column}"::TIMESTAMPTZ) AS TIMESTAMPTZ) AS day, count(*) '
            f'FROM "{table_rule.table}" WHERE {predicate} GROUP BY ALL ORDER BY day',
            params,
        ).fetchall()
        for day, count in days:
            day = _utc(day)
            if day is None:
                where = f'"{column}" IS NULL AND {predicate}'
                where_params = list(params)
                key = "undated"
            else:
                where = f'"{column}"::TIMESTAMPTZ >= ?::TIMESTAMPTZ AND "{column}"::TIMESTAMPTZ < ?::TIMESTAMPTZ AND {predicate}'
                where_params = [day, day + timedelta(days=1), *params]
                key = day.strftime("%Y-%m-%d")
            planned.append(Deletion("warehouse_rows", f"{table_rule.table}/{key}", rule, day, partition_key=key,
                                    table=table_rule.table, where_sql=where, where_params=where_params, rows=count))
    return planned


# ---------------------------------------------------------------- deletion primitives
def fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def content_digest(path: Path) -> tuple[str | None, int]:
    """sha256 of a file's bytes, or of a folder's (relative name, file sha256) list; total bytes."""
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


def remove_path(path: Path) -> None:
    """Unlink a file or a folder tree, then fsync the parent so the removal is durable.

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


def _sample_keys(path: Path) -> list[str]:
    """A few subscriber keys of a lake file, kept in memory to prove later they are gone.

    pyarrow reads one column of the first row group: a new DuckDB connection per file cost
    ~17 ms each, minutes for a demo's thousands of lake files."""
    if not path.is_file() or path.suffix != ".parquet":
        return []
    try:
        parquet = pq.ParquetFile(path if storage.is_local(path) else storage.open_binary(path))
        if parquet.metadata.num_row_groups == 0:
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


def _file_in_warehouse(path: Path, needles: list[str]) -> bool:
    if not needles:
        return False
    return any(candidate.exists() and contains_any(candidate.read_bytes(), needles)
               for candidate in (path, Path(f"{path}.wal")))


# ---------------------------------------------------------------- the run
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
        planned = plan_drops(connection, settings, policy, as_of, sunset)
        planned += plan_orphans(connection, settings, policy, as_of, sunset)
        planned += plan_tables(connection, settings, policy, as_of, sunset, keep_aggregates)
        if sunset and not keep_aggregates and settings.outbox.exists():
            # Broadcast requests go with their rows; their files are the outbox.
            rule = Rule(policy.platform.contract_id, "sunset", 0)
            planned += [Deletion("outbox", settings.stored(p), rule, paths=[p])
                        for p in sorted(settings.outbox.rglob("*")) if p.is_file()]
        outcome.deletions = planned
        say(f"{mode} as of {as_of:%Y-%m-%dT%H:%M:%SZ}: {len(planned)} object(s) to delete")
        for deletion in planned:
            if deletion.table:
                deletion.rows, deletion.content_sha256, deletion.bytes = _rows_digest(connection, deletion)
            else:
                digests = [content_digest(path) for path in deletion.paths]
                deletion.bytes = sum(size for _, size in digests)
                present = [sha for sha, _ in digests if sha]
                deletion.content_sha256 = (present[0] if len(present) == 1 else
                                           hashlib.sha256("".join(present).encode()).hexdigest() if present else None)
        if dry_run:
            return outcome

        # Files first: if the process dies before the warehouse commit, the next run finds the
        # files absent and still certifies them (content hash unknown then).
        for number, deletion in enumerate(d for d in planned if not d.table):
            if deletion.object_kind == "lake_partition":
                deletion.sample_keys = [k for p in deletion.paths for k in _sample_keys(p)]
                deletion.rows = _parquet_rows(deletion.paths)
            for path in deletion.paths:
                remove_path(path)
                crash_point("retention_deleting")
            if number and number % 100 == 0:
                say(f"  deleted {number} file object(s)")

        deleted_drop_ids = _drops_fully_deleted(connection, settings, planned)
        with transaction(connection):
            for deletion in planned:
                if deletion.table:
                    connection.execute(f'DELETE FROM "{deletion.table}" WHERE {deletion.where_sql}', deletion.where_params)
            if deleted_drop_ids:
                connection.executemany("UPDATE drops SET status = 'deleted' WHERE drop_id = ?", [[d] for d in deleted_drop_ids])
            outcome.drops_marked_deleted = len(deleted_drop_ids)
            deleted_at = datetime.now(timezone.utc)
            for deletion in planned:
                deletion.certificate_id = f"cert-{uuid.uuid4().hex[:20]}"
                method = ROWS_METHOD if deletion.table else FILE_METHOD
                connection.execute(
                    "INSERT INTO deletion_certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [deletion.certificate_id, deletion.object_kind, deletion.object_id, deletion.window_start,
                     deletion.partition_key, deletion.rows, deletion.bytes, deletion.content_sha256,
                     deletion.rule.policy, deletion.rule.period, deleted_at, method, "pending: compaction", actor, run_id],
                )
                audit.append(connection, f"{mode}.deleted", purpose=purpose, actor=actor, object_kind=deletion.object_kind,
                             object_id=deletion.object_id, run_id=run_id,
                             details={"certificate_id": deletion.certificate_id, "rows": deletion.rows,
                                      "bytes": deletion.bytes, "policy": deletion.rule.policy, "period": deletion.rule.period})
            if not sunset:
                outcome.audit_pruned_through = _prune_audit_log(connection, settings, policy, as_of, actor, purpose, run_id, outcome)

    if planned or outcome.audit_pruned_through:
        say("compacting the warehouse so deleted rows leave no bytes behind")
        outcome.compaction = compact_warehouse(settings.warehouse_path)

    _verify_and_record(settings, outcome, actor, purpose, run_id)
    say(f"{mode} done: {len(planned)} certificate(s), {len(outcome.failed)} failed verification")
    return outcome


def _parquet_rows(paths: list[Path]) -> int | None:
    """Row count from the Parquet footers (no data read)."""
    files = [p for p in paths if p.is_file() and p.suffix == ".parquet"]  # local or object store
    if not files:
        return None
    try:
        return sum(pq.ParquetFile(path if storage.is_local(path) else storage.open_binary(path)).metadata.num_rows
                   for path in files)
    except (OSError, pa.ArrowException):
        return None


def _drops_fully_deleted(connection: duckdb.DuckDBPyConnection, settings: Settings, planned: list[Deletion]) -> list[str]:
    """Drops none of whose personal files remain: their row becomes status 'deleted'."""
    touched = sorted({d.drop_id for d in planned if d.drop_id})
    done = []
    for drop_id in touched:
        raw_path, lake_path, quarantine_path, feed = connection.execute(
            "SELECT raw_path, lake_path, quarantine_path, feed FROM drops WHERE drop_id = ?", [drop_id]
        ).fetchone()
        remaining = [p for p in (_resolve(settings, raw_path) if feed != "cells" else None,
                                 _resolve(settings, lake_path) if feed != "cells" else None,
                                 _resolve(settings, quarantine_path), settings.staging / drop_id)
                     if p is not None and p.exists()]
        if not remaining:
            done.append(drop_id)
    return done


def _prune_audit_log(connection: duckdb.DuckDBPyConnection, settings: Settings, policy: RetentionPolicy,
                     as_of: datetime, actor: str, purpose: str, run_id: str | None, outcome: RetentionOutcome) -> int | None:
    """Delete audit records past retention, leaving an audit.pruned record that anchors the chain."""
    rule_entry = next((t for t in policy.tables if t.table == "audit_log"), None)
    if rule_entry is None:
        return None
    cutoff = as_of - timedelta(hours=rule_entry.rule.hours)
    last = connection.execute(
        "SELECT max(seq) FROM audit_log WHERE recorded_at < ?::TIMESTAMPTZ", [cutoff]
    ).fetchone()[0]
    if last is None:
        return None
    result = verify_chain(connection, settings.witness)
    if not result.ok:
        # Never erase evidence of tampering by pruning it away.
        outcome.notes.append(f"audit_log not pruned: chain fails at seq {result.first_bad_seq}")
        return None
    through_hash, count = connection.execute(
        "SELECT (SELECT record_hash FROM audit_log WHERE seq = ?), count(*) FROM audit_log WHERE seq <= ?", [last, last]
    ).fetchone()
    connection.execute("DELETE FROM audit_log WHERE seq <= ?", [last])
    certificate_id = f"cert-{uuid.uuid4().hex[:20]}"
    connection.execute(
        "INSERT INTO deletion_certificates VALUES (?, 'warehouse_rows', ?, NULL, NULL, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
        [certificate_id, f"audit_log/seq<={last}", count, through_hash, rule_entry.rule.policy, rule_entry.rule.period,
         datetime.now(timezone.utc), ROWS_METHOD, "pending: compaction", actor, run_id],
    )
    audit.append(connection, PRUNE_ACTION, purpose=purpose, actor=actor, object_kind="warehouse_rows",
                 object_id="audit_log", run_id=run_id,
                 details={"through_seq": last, "through_hash": through_hash, "records": count, "certificate_id": certificate_id})
    outcome.notes.append(f"audit_log pruned through seq {last} ({count} records)")
    return int(last)


def _verify_and_record(settings: Settings, outcome: RetentionOutcome, actor: str, purpose: str, run_id: str | None) -> None:
    """After compaction: files absent, rows gone, sampled keys absent from the warehouse bytes."""
    sampled = [key for d in outcome.deletions for key in d.sample_keys]
    keys_in_warehouse = _file_in_warehouse(settings.warehouse_path, sampled)
    compacted = outcome.compaction is not None
    with connect(settings.warehouse_path) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        with transaction(connection):
            for deletion in outcome.deletions:
                if deletion.table:
                    remaining = connection.execute(
                        f'SELECT count(*) FROM "{deletion.table}" WHERE {deletion.where_sql}', deletion.where_params
                    ).fetchone()[0]
                    if remaining:
                        deletion.verification = f"failed: {remaining} rows remain"
                    else:
                        deletion.verification = "verified: 0 rows remain" + ("; warehouse rebuilt" if compacted else "")
                else:
                    left = [p for p in deletion.paths if p.exists()]
                    if left:
                        deletion.verification = f"failed: {len(left)} path(s) still present"
                    elif deletion.sample_keys and keys_in_warehouse:
                        deletion.verification = "failed: sampled keys found in the warehouse file"
                    else:
                        deletion.verification = "verified: absent" + (
                            f"; {len(deletion.sample_keys)} sampled keys not found in compacted warehouse" if deletion.sample_keys else "")
                connection.execute("UPDATE deletion_certificates SET verification = ? WHERE certificate_id = ?",
                                   [deletion.verification, deletion.certificate_id])
            connection.execute(
                "UPDATE deletion_certificates SET verification = 'verified: 0 rows remain; warehouse rebuilt' "
                "WHERE verification = 'pending: compaction' AND object_id LIKE 'audit_log/%'"
            )
            audit.append(connection, f"{outcome.mode}.completed", purpose=purpose, actor=actor, object_kind="retention_run",
                         run_id=run_id, details={"as_of": outcome.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                 "certificates": len(outcome.deletions), "failed": len(outcome.failed),
                                                 "by_kind": outcome.counts(), "drops_marked_deleted": outcome.drops_marked_deleted,
                                                 "compaction": outcome.compaction, "notes": outcome.notes})


def outcome_summary(outcome: RetentionOutcome) -> dict[str, Any]:
    """Counts only (safe for Dagster metadata and logs)."""
    return {
        "as_of": outcome.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": outcome.mode,
        "dry_run": outcome.dry_run,
        "objects": len(outcome.deletions),
        "by_kind": outcome.counts(),
        "rows": sum(d.rows or 0 for d in outcome.deletions if d.table),
        "bytes": sum(d.bytes or 0 for d in outcome.deletions),
        "drops_marked_deleted": outcome.drops_marked_deleted,
        "failed_verification": len(outcome.failed),
        "compaction": outcome.compaction,
        "notes": outcome.notes,
    }


def summary_json(outcome: RetentionOutcome) -> str:
    return json.dumps(outcome_summary(outcome), sort_keys=True, default=str)


# ---------------------------------------------------------------- sunset
# Columns that legitimately hold 64-hex values that are not subscribers: file hashes, chain
# hashes and ids derived from them. Everything else must hold no 64-hex value after sunset.
METADATA_HEX_COLUMN = re.compile(r"(sha256|hash|_path|^details$|^(source_)?drop_ids?$|^object_id$|^certificate_id$|"
                                 r"^request_id$|^alert_id$|^run_id$|^partition_key$|^code_version$|^key_id$)")
SAMPLE_KEYS_PER_FILE_AT_SUNSET = 20


@dataclass
class SunsetReport:
    outcome: RetentionOutcome
    sampled_keys: int
    needle_hits: int
    hex_hits: dict[str, int]
    table_hits: dict[str, int]
    needle_hit_places: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.outcome.failed and not self.needle_hits and not self.hex_hits and not self.table_hits

    def lines(self) -> list[str]:
        summary = outcome_summary(self.outcome)
        lines = [f"sunset: {summary['objects']} object(s) deleted with certificates {summary['by_kind']}, "
                 f"{summary['rows']} warehouse rows, {summary['failed_verification']} failed verification",
                 f"scan: {self.sampled_keys} sampled subscriber keys searched in every remaining file: {self.needle_hits} hit(s)",
                 f"scan: unexplained 64-hex tokens in remaining files: {sum(self.hex_hits.values())}",
                 f"scan: 64-hex values in non-metadata warehouse columns: {sum(self.table_hits.values())}"]
        lines += [f"  sampled key found in {place}" for place in self.needle_hit_places]
        lines += [f"  {path}: {count}" for path, count in sorted(self.hex_hits.items())]
        lines += [f"  {column}: {count}" for column, count in sorted(self.table_hits.items())]
        lines.append("sunset verified: no personal data left" if self.clean else "sunset NOT clean: see above")
        return lines


def _collect_needles(settings: Settings) -> list[str]:
    """Sample subscriber keys from every personal file before it is deleted (memory only)."""
    from crowd_platform.governance.privacy_scan import HEX64, iter_files, _inflate_gzip

    needles: set[str] = set()
    for path in iter_files([settings.events_lake, settings.staging]):
        if path.suffix == ".parquet":
            try:
                with duckdb.connect() as scratch:
                    needles.update(row[0] for row in scratch.execute(
                        "SELECT DISTINCT subscriber_key FROM read_parquet(?) WHERE subscriber_key IS NOT NULL LIMIT ?",
                        [str(path), SAMPLE_KEYS_PER_FILE_AT_SUNSET]).fetchall())
            except duckdb.Error:
                continue
    for path in iter_files([settings.raw, settings.quarantine]):
        if path.suffix == ".json":
            continue  # manifests and reports hold file hashes, not subscriber keys
        data = path.read_bytes()[: 4 << 20]
        inflated = _inflate_gzip(data) if data[:2] == b"\x1f\x8b" else data
        tokens = HEX64.findall(inflated or b"")[:SAMPLE_KEYS_PER_FILE_AT_SUNSET]
        needles.update(token.decode() for token in tokens)
    return sorted(needles)


def _warehouse_hex_scan(settings: Settings) -> tuple[set[str], dict[str, int]]:
    """(allowed metadata hex values, non-metadata column -> count of 64-hex values)."""
    allowed: set[str] = set()
    hits: dict[str, int] = {}
    with connect(settings.warehouse_path, read_only=True) as connection:
        columns = connection.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE data_type LIKE 'VARCHAR%' AND table_schema = 'main'"
        ).fetchall()
        for table, column, data_type in columns:
            text = f'array_to_string("{column}", \',\')' if data_type.endswith("[]") else f'"{column}"'
            if METADATA_HEX_COLUMN.search(column):
                for (values,) in connection.execute(
                    f"SELECT regexp_extract_all({text}, '[0-9a-f]{{64}}') FROM \"{table}\" WHERE {text} IS NOT NULL"
                ).fetchall():
                    allowed.update(values or [])
            else:
                count = connection.execute(
                    f"SELECT count(*) FROM \"{table}\" WHERE regexp_matches({text}, '[0-9a-f]{{64}}')"
                ).fetchone()[0]
                if count:
                    hits[f"{table}.{column}"] = int(count)
    return allowed, hits


def sunset(settings: Settings, *, keep_aggregates: bool = False, actor: str | None = None, purpose: str | None = None,
           run_id: str | None = None, progress: Progress | None = None) -> SunsetReport:
    """Purge every personal and pseudonymized datum, certify it, compact, and prove nothing is left."""
    from crowd_platform.governance.privacy_scan import scan_for_hex_keys, scan_for_subscriber_values

    say = progress or (lambda message: None)
    needles = _collect_needles(settings)
    say(f"sampled {len(needles)} subscriber keys to search for after the purge (kept in memory only)")
    outcome = apply_retention(settings, dry_run=False, sunset=True, keep_aggregates=keep_aggregates,
                              actor=actor, purpose=purpose, run_id=run_id, progress=progress)
    say("scanning every remaining file under CROWD_HOME")
    needle_hits = scan_for_subscriber_values([settings.home], needles) if needles else []
    allowed, table_hits = _warehouse_hex_scan(settings)
    # Witness files and Dagster's own storage hold chain hashes / data versions of the same shape.
    roots = [p for p in settings.home.iterdir() if p.name not in {settings.witness.name, settings.dagster_home.name}]
    hex_hits = scan_for_hex_keys(roots, allowed)
    places = sorted({f"{hit.path} ({hit.where})" for hit in needle_hits})  # where, never which key
    report = SunsetReport(outcome, len(needles), len(needle_hits), hex_hits, table_hits, places)
    with connect(settings.warehouse_path) as connection:
        audit.append(connection, "sunset.verified" if report.clean else "sunset.verification_failed",
                     purpose=purpose or settings.purpose, actor=actor, object_kind="platform", run_id=run_id,
                     details={"keep_aggregates": keep_aggregates, "sampled_keys": len(needles), "needle_hits": len(needle_hits),
                              "hex_hits": sum(hex_hits.values()), "table_hits": sum(table_hits.values()),
                              "certificates": len(outcome.deletions)})
    return report
