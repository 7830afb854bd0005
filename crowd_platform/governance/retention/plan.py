"""A run decides everything it will delete before it deletes anything, so a dry run reports
exactly what a real run would do and every object's content is hashed while it still exists.

Drop data ages from the drop's window_end (the moment the events describe), files no drops
row points to from their mtime, warehouse rows from the contract's ``retention_column``, API
audit files from the end of their UTC day (and only once sealed: governance/api_audit.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.common import storage
from crowd_platform.common.settings import Settings
from crowd_platform.common.timeutil import parse_utc_or_none
from crowd_platform.governance import api_audit
from crowd_platform.governance.retention.policy import DROP_ELEMENT, RetentionPolicy, Rule


@dataclass
class Deletion:
    """One object to delete, and after deletion its certificate fields."""

    object_kind: str                 # raw_drop | lake_partition | quarantine | staging | warehouse_rows | outbox | api_audit
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


def resolve(settings: Settings, value: str | None) -> Path | None:
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
        # The drop's own feed contract dates it: events 24 h, a cell list (reference data) 1 y.
        drop_rule = policy.drop_rule(operator, feed or "events")
        # A cell list's canonical lake file is what bts_registry is rebuilt from (every accepted
        # list, oldest first): only its raw copy expires; the list itself goes at sunset.
        registry_source = feed == "cells" and not sunset

        def expired(rule: Rule) -> bool:
            return sunset or window_end + timedelta(hours=rule.hours) <= as_of

        raw = resolve(settings, raw_path)
        if raw is not None and expired(drop_rule):
            planned.append(Deletion("raw_drop", drop_id, sunset_rule if sunset else drop_rule, window_start,
                                    paths=_raw_paths(settings, raw), drop_id=drop_id))
        lake = resolve(settings, lake_path)
        if lake is not None and not registry_source and expired(drop_rule):
            planned.append(Deletion("lake_partition", drop_id, sunset_rule if sunset else drop_rule, window_start,
                                    partition_key=_lake_partition_key(settings, lake), paths=[lake], drop_id=drop_id))
        quarantined = resolve(settings, quarantine_path)
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
            path = resolve(settings, value)
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



def plan_outbox(settings: Settings, policy: RetentionPolicy, sunset: bool, keep_aggregates: bool) -> list[Deletion]:
    """At sunset, broadcast requests go with their rows; their files are the outbox."""
    if not (sunset and not keep_aggregates and settings.outbox.exists()):
        return []
    rule = Rule(policy.platform.contract_id, "sunset", 0)
    return [Deletion("outbox", settings.stored(p), rule, paths=[p])
            for p in sorted(settings.outbox.rglob("*")) if p.is_file()]


def plan_api_audit(connection: duckdb.DuckDBPyConnection, settings: Settings, policy: RetentionPolicy,
                   as_of: datetime, sunset: bool, dry_run: bool, notes: list[str]) -> list[Deletion]:
    """API audit files whose UTC day ended a retention period before ``as_of``, if sealed and
    still matching their seal. Never an unsealed file (a real run seals closed files first; a dry
    run counts a closed one as the real run would), never one that differs from its seal (the
    evidence stays; verification reports it). A sealed file already gone with no deletion record
    (a crash between unlink and commit) is certified again. Kept at sunset when the contract says so."""
    if sunset and policy.keeps_at_sunset(api_audit.ELEMENT):
        return []
    rule = policy.rule(api_audit.ELEMENT)
    files, _ = api_audit.audit_files(settings.home)
    seals = api_audit.seals(connection)
    present = {entry.object_id for entry in files}
    gone = [entry for object_id, seal in seals.items() if seal.active and object_id not in present
            and (entry := api_audit.audit_file(settings.home, object_id)) is not None]
    now = min(as_of, datetime.now(timezone.utc))
    planned, unsealed, differs = [], 0, 0
    for entry in sorted([*files, *gone], key=lambda f: (f.day, f.object_id)):
        if not (sunset or entry.day_end + timedelta(hours=rule.hours) <= as_of):
            continue
        seal = seals.get(entry.object_id)
        if seal is None or not seal.active:
            if not (dry_run and entry.closed(now)):
                unsealed += 1
                continue
            lines = None
        elif entry.path.exists() and api_audit.check_sealed(entry, seal) is not None:
            differs += 1
            continue
        else:
            lines = seal.details.get("lines")
        planned.append(Deletion(api_audit.OBJECT_KIND, entry.object_id, Rule(policy.platform.contract_id, "sunset", 0)
                                if sunset else rule, entry.day_end - timedelta(days=1),
                                partition_key=entry.day.isoformat(), paths=[entry.path], rows=lines))
    if unsealed:
        notes.append(f"api_audit: {unsealed} expired file(s) not deleted: not sealed")
    if differs:
        notes.append(f"api_audit: {differs} expired file(s) not deleted: they differ from their seal (evidence kept)")
    return planned


def plan_deletions(connection: duckdb.DuckDBPyConnection, settings: Settings, policy: RetentionPolicy,
                   as_of: datetime, sunset: bool, keep_aggregates: bool, *, dry_run: bool = False,
                   notes: list[str] | None = None) -> list[Deletion]:
    """Everything one run deletes: drops, orphaned files, warehouse rows, sealed API audit files,
    and at sunset the outbox. Why something expired is kept goes to ``notes``."""
    planned = plan_drops(connection, settings, policy, as_of, sunset)
    planned += plan_orphans(connection, settings, policy, as_of, sunset)
    planned += plan_tables(connection, settings, policy, as_of, sunset, keep_aggregates)
    planned += plan_api_audit(connection, settings, policy, as_of, sunset, dry_run, notes if notes is not None else [])
    planned += plan_outbox(settings, policy, sunset, keep_aggregates)
    return planned
