"""Drops-table lifecycle: write (raw copy, staging), audit (rules), publish or quarantine.

Every state change commits together with its audit_log record. Files move before the rows
that describe them, and a landing file is removed only after its bytes are safely in
``raw/`` or ``quarantine/``. Nothing here logs or stores a subscriber-level value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.common import audit
from crowd_platform.common import storage
from crowd_platform.common.contracts import Contract, contract_for
from crowd_platform.ingestion.interrupts import reraise_if_interrupt
from crowd_platform.ingestion.landing import UnroutableEntry, is_utf8
from crowd_platform.ingestion.layout import ParseError, stage_drop
from crowd_platform.ingestion.manifest import MANIFEST_SUFFIX, Manifest, drop_id as make_drop_id
from crowd_platform.ingestion.rules import RuleContext, RuleResult, compile_rules, run_duckdb_rules, run_gx_rules
from crowd_platform.common.settings import Settings
from crowd_platform.common.crashpoints import crash_point

log = logging.getLogger(__name__)
FINAL_STATUSES = ("accepted", "quarantined", "superseded", "rejected", "deleted")
DEFAULT_GX_DROPS_PER_RUN = 40
DEFAULT_GX_MAX_ROWS = 100_000


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


def _fsync_copy(source: Path, target: Path) -> None:
    """Atomic copy (local: temp + fsync + rename; object store: the key written complete)."""
    storage.copy_file(source, target)


def _copy_hashing(source: Path, target: Path) -> str:
    """Copy into a local file with fsync and return the sha256 of the bytes copied."""
    return storage.copy_hashing(source, target)


def _suffix(file_name: str) -> str:
    for known in (".csv.gz", ".csv", ".parquet", ".gz"):
        if file_name.endswith(known):
            return known
    return ""


def gx_max_rows(settings: Settings) -> int:
    return int(settings.section("ingestion").get("gx_max_rows", DEFAULT_GX_MAX_ROWS))


def gx_drops_per_run(settings: Settings) -> int:
    """How many drops of one run GX cross-checks. GX costs ~0.4 s per drop whatever its size
    (suite bookkeeping, measured in docs/decisions/004): a live window (5 drops) is always
    fully cross-checked; a backlog of hundreds is sampled evenly instead of taking minutes."""
    return int(settings.section("ingestion").get("gx_drops_per_run", DEFAULT_GX_DROPS_PER_RUN))


def gx_sample(count: int, budget: int) -> set[int]:
    """Indices (of ``count`` drops in processing order) that GX cross-checks: evenly spread."""
    if count <= budget:
        return set(range(count))
    if budget <= 0:
        return set()
    step = count / budget
    return {int(index * step) for index in range(budget)}


def staging_file(settings: Settings, drop_id: str, feed: str) -> Path:
    return settings.staging / drop_id / f"{feed}.parquet"


def lake_file(settings: Settings, drop: dict[str, Any]) -> Path:
    if drop["feed"] == "cells":
        return settings.lake / "cells" / f"operator={drop['operator']}" / f"{drop['drop_id']}.parquet"
    start = drop["window_start"].astimezone(timezone.utc)
    return (
        settings.events_lake / f"date={start:%Y-%m-%d}" / f"window={start:%H%M}" / f"operator={drop['operator']}" / f"{drop['drop_id']}.parquet"
    )


class _Txn:
    """BEGIN/COMMIT around a warehouse change and its audit record."""

    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self.connection = connection

    def __enter__(self):
        self.connection.execute("BEGIN TRANSACTION")
        return self.connection

    def __exit__(self, kind, value, traceback):
        self.connection.execute("ROLLBACK" if kind else "COMMIT")
        return False


def _audit(connection, settings: Settings, action: str, drop_id: str, run_id: str | None, **details: Any) -> None:
    audit.append(connection, action, purpose=settings.purpose, object_kind="drop", object_id=drop_id, run_id=run_id, details=details)


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


# ---------------------------------------------------------------- ingest (write + audit)
def ingest_drop(
    settings: Settings,
    connection: duckdb.DuckDBPyConnection,
    operator_dir: Path,
    manifest_name: str,
    manifest: Manifest,
    *,
    run_id: str | None,
    gx_cross_check: bool = True,
) -> DropOutcome:
    """Write-audit one complete drop: raw copy, drops row, staging Parquet, rules, quarantine.

    ``gx_cross_check`` False skips the Great Expectations run for this drop (the compiled
    DuckDB rules, which decide, always run): see gx_drops_per_run.
    """
    manifest_path = operator_dir / manifest_name
    data_path = operator_dir / manifest.file
    manifest_bytes = manifest_path.read_bytes()
    if data_path.is_symlink():
        return _quarantine_landing(settings, connection, manifest, manifest_path, data_path, "data file is a symlink", run_id)
    if not data_path.is_file():
        return _quarantine_landing(settings, connection, manifest, manifest_path, None, "data file named in the manifest is missing", run_id)
    # One read of the bytes: hash while copying into raw/ (a temp name until the hash is known).
    # On an object store the copy lands in local staging scratch first (DuckDB parses a local
    # file); raw/ then gets it in one PUT under its final key.
    remote = not storage.is_local(settings.raw)
    pending_raw = (settings.staging if remote else settings.raw) / f".incoming-{os.getpid()}-{manifest_name}"
    actual_sha = _copy_hashing(data_path, pending_raw)
    actual_bytes = pending_raw.stat().st_size
    drop_id = make_drop_id(manifest.operator, manifest.feed, manifest.window_start, manifest.delivery, actual_sha)

    original = connection.execute(
        "SELECT drop_id, status, run_id FROM drops WHERE sha256 = ? AND status IN ('accepted','quarantined','superseded','rejected','deleted','received','released') "
        "ORDER BY received_at LIMIT 1",
        [actual_sha],
    ).fetchone()
    # A 'received' row of the same drop from an earlier run is an interrupted ingest: redo it.
    # From this very run, it is the same bytes landing twice (e.g. under another file name).
    retry = original is not None and original[0] == drop_id and original[1] in ("received", "released") and original[2] != run_id
    if original and not retry:
        pending_raw.unlink()
        return _record_duplicate(settings, connection, manifest, manifest_name, data_path, manifest_path, drop_id, original[0], actual_sha, run_id)

    # WRITE: immutable raw copy first, then the row, then landing may go.
    raw_path = settings.raw / f"{actual_sha}{_suffix(manifest.file)}"
    if remote:
        parse_source = settings.staging / drop_id / f"source{_suffix(manifest.file)}"
        storage.move(pending_raw, parse_source)
        storage.copy_file(parse_source, raw_path)
        storage.write_bytes(raw_path.with_name(raw_path.name + MANIFEST_SUFFIX), manifest_bytes)
    else:
        os.replace(pending_raw, raw_path)
        parse_source = raw_path
    raw_manifest = raw_path.with_name(raw_path.name + MANIFEST_SUFFIX)
    if not remote:
        _fsync_copy(manifest_path, raw_manifest)
    contract = contract_for(settings.contracts_dir, manifest.operator, manifest.feed)
    received_at = utcnow()
    with _Txn(connection):
        connection.execute("DELETE FROM drops WHERE drop_id = ?", [drop_id])
        connection.execute("DELETE FROM check_results WHERE drop_id = ?", [drop_id])
        connection.execute(
            "INSERT INTO drops (drop_id, operator, feed, file_name, manifest_name, sha256, bytes, row_count, window_start, "
            "window_end, delivery, key_id, received_at, contract_id, contract_version, status, raw_path, run_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'received', ?, ?)",
            [drop_id, manifest.operator, manifest.feed, manifest.file, manifest_name, actual_sha, actual_bytes, manifest.row_count,
             manifest.window_start, manifest.window_end, manifest.delivery, manifest.key_id, received_at,
             contract.contract_id if contract else None, manifest.contract_version, settings.stored(raw_path), run_id],
        )
        _audit(connection, settings, "drop_received", drop_id, run_id, operator=manifest.operator, feed=manifest.feed,
               sha256=actual_sha, bytes=actual_bytes, declared_rows=manifest.row_count, delivery=manifest.delivery)
    storage.remove(data_path, missing_ok=False)
    storage.remove(manifest_path, missing_ok=False)
    crash_point("ingest_received")

    def fail(reason: str, stage: str, failed: list[dict[str, Any]] | None = None, rows: int | None = None) -> DropOutcome:
        return quarantine_drop(settings, connection, drop_id, reason, stage=stage, failed_rules=failed or [], run_id=run_id, rows=rows)

    # Manifest checks recorded like rules (engine 'manifest'), so every decision has a row.
    manifest_checks = [
        ("manifest_sha256_matches", actual_sha == manifest.sha256, "sha256 of the bytes differs from the manifest"),
        ("manifest_bytes_match", actual_bytes == manifest.bytes, f"file has {actual_bytes} bytes, manifest says {manifest.bytes}"),
        ("contract_exists", contract is not None, "no data contract for this operator and feed"),
        ("contract_version_compatible", contract is not None and _major(contract.version) == _major(manifest.contract_version),
         f"manifest contract_version {manifest.contract_version} is not compatible with contract {contract.version if contract else '-'}"),
    ]
    _write_results(connection, drop_id, [
        RuleResult(name, "manifest", ok, None, None, [], "ok" if ok else message) for name, ok, message in manifest_checks
    ], run_id)
    for name, ok, message in manifest_checks:
        if not ok:
            return fail(message, "manifest", [{"rule": name, "engine": "manifest", "details": message}])

    # Parse per contract layout into staging (WAP "write").
    target = staging_file(settings, drop_id, manifest.feed)
    try:
        staged = stage_drop(connection, parse_source, contract, target)
    except Exception as error:  # noqa: BLE001 - one bad drop must never kill the run
        reraise_if_interrupt(error, "parsing a drop")
        if not isinstance(error, ParseError):
            log.exception("unexpected parse failure for drop %s", drop_id)
            error = ParseError(f"unexpected reader failure ({type(error).__name__})")
        _write_results(connection, drop_id, [RuleResult("parse", "duckdb", False, None, None, [], str(error))], run_id)
        return fail(f"parse failed: {error}", "parse", [{"rule": "parse", "engine": "duckdb", "details": str(error)}])

    # AUDIT: every contract rule, DuckDB always, GX as well for drops up to gx_max_rows.
    try:
        results = validate_staged(settings, connection, contract, manifest, target, staged.rows, gx=gx_cross_check)
    except Exception as error:  # noqa: BLE001 - quarantine, never crash the run
        # A stop signal, not a bad drop: it stays 'received' for crash recovery.
        reraise_if_interrupt(error, "validating a drop")
        log.warning("validation failed to run for drop %s: %s", drop_id, type(error).__name__)
        reason = f"validation could not run ({type(error).__name__})"
        return fail(reason, "validate", [{"rule": "validation", "engine": "duckdb", "details": _one_line(str(error).splitlines()[0], 160)}], staged.rows)
    _write_results(connection, drop_id, results, run_id)
    failed = _failed_rules(results, contract)
    if failed:
        summary = "; ".join(
            f"{item['rule']}{' (' + item['quarantine_reason'] + ')' if item.get('quarantine_reason') else ''}: "
            f"{item.get('unexpected_count') if item.get('unexpected_count') is not None else '-'} rows"
            for item in failed if item["engine"] == "duckdb" or item.get("disagreement")
        )
        return fail(f"contract rules failed: {summary}", "validate", failed, staged.rows)
    with _Txn(connection):
        connection.execute("UPDATE drops SET validated_at = ?, rows_loaded = ? WHERE drop_id = ?", [utcnow(), staged.rows, drop_id])
        _audit(connection, settings, "drop_validated", drop_id, run_id, rows=staged.rows,
               rules=len({result.rule for result in results}), engines=sorted({result.engine for result in results}))
    return DropOutcome(drop_id, manifest.operator, manifest.feed, "validated", rows=staged.rows)


def _major(version: str) -> str:
    return str(version).split(".")[0]


def validate_staged(settings: Settings, connection, contract: Contract, manifest: Manifest, parquet: Path, rows: int,
                    gx: bool = True) -> list[RuleResult]:
    specs = compile_rules(contract)
    context = RuleContext(manifest.window_start, manifest.window_end, manifest.row_count, manifest.operator)
    results = run_duckdb_rules(connection, parquet, specs, context)
    if gx and rows <= gx_max_rows(settings):
        known = None
        if any(spec.kind == "unknown_cell_share" for spec in specs):
            evaluated = next(result for result in results if result.rule in {s.name for s in specs if s.kind == "unknown_cell_share"})
            if evaluated.evaluated:
                known = [row[0] for row in connection.execute(
                    "SELECT DISTINCT cell_id FROM bts_registry WHERE operator = ? AND valid_from < ? AND (valid_to IS NULL OR valid_to > ?)",
                    [manifest.operator, manifest.window_end, manifest.window_start]).fetchall()]
        frame = connection.execute(f"SELECT * FROM read_parquet('{str(parquet).replace(chr(39), chr(39) * 2)}')").df()
        results.extend(run_gx_rules(frame, specs, context, known))
    return results


def _failed_rules(results: list[RuleResult], contract: Contract) -> list[dict[str, Any]]:
    reasons = {spec.name: spec.quarantine_reason for spec in compile_rules(contract)}
    by_rule: dict[str, dict[str, bool]] = {}
    for result in results:
        by_rule.setdefault(result.rule, {})[result.engine] = result.passed
    failed = []
    for result in results:
        engines = by_rule[result.rule]
        disagreement = len(set(engines.values())) > 1
        if not result.passed or disagreement:
            failed.append({
                "rule": result.rule, "engine": result.engine, "passed": result.passed,
                "element_count": result.element_count, "unexpected_count": result.unexpected_count,
                "example_rows": result.example_rows, "details": result.details,
                "quarantine_reason": reasons.get(result.rule), "disagreement": disagreement,
            })
    return failed


def _write_results(connection, drop_id: str, results: list[RuleResult], run_id: str | None) -> None:
    checked_at = utcnow()
    with _Txn(connection):
        connection.executemany(
            "INSERT INTO check_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[drop_id, result.rule, result.engine, result.passed, result.element_count, result.unexpected_count,
              result.example_rows, result.details, checked_at, run_id] for result in results],
        )


# ---------------------------------------------------------------- quarantine
def _report(path: Path, payload: dict[str, Any]) -> None:
    if not storage.is_local(path):
        storage.write_bytes(path, json.dumps(payload, indent=1, default=str).encode("utf-8"))
        return
    temporary = path.with_name(".report.json.tmp")
    temporary.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    os.replace(temporary, path)


def quarantine_drop(
    settings: Settings, connection, drop_id: str, reason: str, *, stage: str, failed_rules: list[dict[str, Any]],
    run_id: str | None, rows: int | None = None,
) -> DropOutcome:
    """Move a received drop (bytes from raw/, as received) to quarantine/<drop_id>/ with report.json."""
    drop = connection.execute("SELECT operator, feed, file_name, manifest_name, sha256, bytes, raw_path, contract_id, contract_version "
                              "FROM drops WHERE drop_id = ?", [drop_id]).fetchone()
    operator, feed, file_name, manifest_name, sha, size, raw_path, contract_id, contract_version = drop
    target = settings.quarantine / drop_id
    storage.ensure_dir(target)
    raw = settings.resolve(raw_path) or Path("")
    _fsync_copy(raw, target / file_name)
    raw_manifest = raw.with_name(raw.name + MANIFEST_SUFFIX)
    if raw_manifest.exists():
        _fsync_copy(raw_manifest, target / manifest_name)
    reason = _one_line(reason)
    _report(target / "report.json", {
        "drop_id": drop_id, "operator": operator, "feed": feed, "file": file_name, "manifest": manifest_name,
        "sha256": sha, "bytes": size, "contract_id": contract_id, "contract_version": contract_version,
        "stage": stage, "reason": reason, "rows_loaded": rows, "failed_rules": failed_rules,
        "quarantined_at": utcnow().isoformat(),
        "note": "Row numbers count data rows from 1 (header excluded). Values are never reported.",
    })
    with _Txn(connection):
        connection.execute(
            "UPDATE drops SET status = 'quarantined', reason = ?, quarantine_path = ?, raw_path = NULL, validated_at = ?, rows_loaded = ? WHERE drop_id = ?",
            [reason, settings.stored(target), utcnow(), rows, drop_id],
        )
        _audit(connection, settings, "drop_quarantined", drop_id, run_id, stage=stage, reason=reason,
               failed_rules=sorted({item["rule"] for item in failed_rules}))
    # The quarantine copy is now the only copy we keep of a rejected drop; raw/ holds accepted ones.
    storage.remove(raw)
    storage.remove(raw_manifest)
    shutil.rmtree(settings.staging / drop_id, ignore_errors=True)
    return DropOutcome(drop_id, operator, feed, "quarantined", reason, failed_rules, rows)


def _quarantine_landing(settings, connection, manifest: Manifest, manifest_path: Path, data_path: Path | None, reason: str, run_id) -> DropOutcome:
    """A drop whose data file is unusable before any copy (missing, symlink): move what arrived."""
    manifest_sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    drop_id = make_drop_id(manifest.operator, manifest.feed, manifest.window_start, manifest.delivery, manifest_sha)
    target = settings.quarantine / drop_id
    storage.ensure_dir(target)
    moved = [manifest_path.name]
    storage.move(manifest_path, target / manifest_path.name)
    if data_path is not None and (data_path.exists() or storage.is_symlink(data_path)):
        storage.move(data_path, target / data_path.name)  # a symlink moves as a link, never followed
        moved.append(data_path.name)
    _report(target / "report.json", {
        "drop_id": drop_id, "operator": manifest.operator, "feed": manifest.feed, "file": manifest.file,
        "sha256": None, "manifest_sha256": manifest_sha, "stage": "manifest", "reason": reason, "files": moved,
        "failed_rules": [{"rule": "data_file_usable", "engine": "manifest", "details": reason}],
    })
    with _Txn(connection):
        connection.execute("DELETE FROM drops WHERE drop_id = ?", [drop_id])
        connection.execute(
            "INSERT INTO drops (drop_id, operator, feed, file_name, manifest_name, sha256, bytes, row_count, window_start, window_end, "
            "delivery, key_id, received_at, contract_version, status, reason, quarantine_path, run_id) "
            "VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, ?, 'quarantined', ?, ?, ?)",
            [drop_id, manifest.operator, manifest.feed, manifest.file, manifest_path.name, manifest.row_count, manifest.window_start,
             manifest.window_end, manifest.delivery, manifest.key_id, utcnow(), manifest.contract_version, reason, settings.stored(target), run_id],
        )
        _audit(connection, settings, "drop_received", drop_id, run_id, operator=manifest.operator, feed=manifest.feed, manifest_sha256=manifest_sha)
        _audit(connection, settings, "drop_quarantined", drop_id, run_id, stage="manifest", reason=reason)
    return DropOutcome(drop_id, manifest.operator, manifest.feed, "quarantined", reason)


def _record_duplicate(settings, connection, manifest: Manifest, manifest_name: str, data_path: Path, manifest_path: Path,
                      drop_id: str, original_id: str, sha: str, run_id) -> DropOutcome:
    """Same bytes as a drop already decided: record it, do not process it twice."""
    existing = connection.execute("SELECT count(*) FROM drops WHERE drop_id LIKE ?", [drop_id + "%"]).fetchone()[0]
    duplicate_id = f"{drop_id}_dup{existing}" if existing else drop_id
    reason = f"identical bytes to drop {original_id}"
    with _Txn(connection):
        connection.execute(
            "INSERT INTO drops (drop_id, operator, feed, file_name, manifest_name, sha256, bytes, row_count, window_start, window_end, "
            "delivery, key_id, received_at, contract_version, status, reason, superseded_by, run_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'duplicate', ?, ?, ?)",
            [duplicate_id, manifest.operator, manifest.feed, manifest.file, manifest_name, sha, data_path.stat().st_size, manifest.row_count,
             manifest.window_start, manifest.window_end, manifest.delivery, manifest.key_id, utcnow(), manifest.contract_version,
             reason, original_id, run_id],
        )
        _audit(connection, settings, "drop_duplicate", duplicate_id, run_id, original=original_id, sha256=sha)
    # Its bytes are already kept under the original's raw/ or quarantine/ copy.
    storage.remove(data_path, missing_ok=False)
    storage.remove(manifest_path, missing_ok=False)
    return DropOutcome(duplicate_id, manifest.operator, manifest.feed, "duplicate", reason)


def quarantine_unroutable(settings: Settings, connection, entry: UnroutableEntry, run_id: str | None) -> DropOutcome | None:
    """Move landing entries no window can take into quarantine/unroutable_<hash>/ (never following links)."""
    folder = settings.landing / entry.operator_dir
    paths = [folder / name for name in entry.names if (folder / name).exists() or storage.is_symlink(folder / name)]
    if not paths and entry.names:
        return None  # already handled by an earlier run
    digest = hashlib.sha256(os.fsencode(entry.operator_dir))
    for path in paths:
        digest.update(os.fsencode(path.name))
        digest.update(os.readlink(path).encode("utf-8", "surrogateescape") if storage.is_symlink(path) else path.read_bytes())
    drop_id = f"unroutable_{digest.hexdigest()[:16]}"
    target = settings.quarantine / drop_id
    storage.ensure_dir(target)
    for path in paths:
        storage.move(path, target / path.name)
    printable = [name if is_utf8(name) else "hex:" + os.fsencode(name).hex() for name in entry.names]
    operator = entry.operator_dir if is_utf8(entry.operator_dir) else "hex:" + os.fsencode(entry.operator_dir).hex()
    reason = _one_line(f"unroutable: {entry.reason}")
    _report(target / "report.json", {
        "drop_id": drop_id, "operator_folder": operator, "files": printable, "stage": "routing", "reason": reason,
        "failed_rules": [{"rule": "routable", "engine": "manifest", "details": entry.reason}],
    })
    with _Txn(connection):
        connection.execute("DELETE FROM drops WHERE drop_id = ?", [drop_id])
        connection.execute(
            "INSERT INTO drops (drop_id, operator, file_name, received_at, status, reason, quarantine_path, run_id) "
            "VALUES (?, ?, ?, ?, 'quarantined', ?, ?, ?)",
            [drop_id, operator, ", ".join(printable)[:500], utcnow(), reason, settings.stored(target), run_id],
        )
        _audit(connection, settings, "drop_received", drop_id, run_id, operator_folder=operator, files=len(paths))
        _audit(connection, settings, "drop_quarantined", drop_id, run_id, stage="routing", reason=reason)
    return DropOutcome(drop_id, operator, None, "quarantined", reason)


# ---------------------------------------------------------------- publish
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
            "SELECT count(*), count(*) FILTER (WHERE NOT passed) FROM check_results WHERE drop_id = ? AND engine <> 'manifest'",
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
        with _Txn(connection):
            connection.execute("UPDATE drops SET status = 'accepted', lake_path = ? WHERE drop_id = ?", [settings.stored(target), drop["drop_id"]])
            _audit(connection, settings, "drop_published", drop["drop_id"], run_id, lake_path=settings.stored(target), rows=drop["rows_loaded"])
            winner = max(newer, key=lambda rival: (rival["delivery"], rival["received_at"]))["drop_id"] if newer else drop["drop_id"]
            losers = older + ([drop] if newer else [])
            for loser in losers:
                connection.execute("UPDATE drops SET status = 'superseded', superseded_by = ?, lake_path = NULL WHERE drop_id = ?",
                                   [winner, loser["drop_id"]])
                _audit(connection, settings, "drop_superseded", loser["drop_id"], run_id, superseded_by=winner)
        for loser in older + ([{"lake_path": settings.stored(target)}] if newer else []):
            # Lake file removed (no downstream read), raw copy kept until retention.
            if loser.get("lake_path"):
                storage.remove(settings.resolve(loser["lake_path"]))
        shutil.rmtree(settings.staging / drop["drop_id"], ignore_errors=True)
        outcomes.append(DropOutcome(drop["drop_id"], drop["operator"], drop["feed"], "superseded" if newer else "accepted", rows=drop["rows_loaded"]))
    return outcomes
