"""Ingest one drop: raw copy, drops row, staging Parquet, contract rules, verdict.

A landing file is removed only after its bytes are safely in ``raw/``; a drop that fails
any blocking rule goes to quarantine.py, one that passes waits in staging for publish.py.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.common import storage
from crowd_platform.common.contracts import Contract, contract_for
from crowd_platform.ingestion.interrupts import reraise_if_interrupt
from crowd_platform.ingestion.layout import ParseError, stage_drop
from crowd_platform.ingestion.manifest import MANIFEST_SUFFIX, Manifest, drop_id as make_drop_id
from crowd_platform.ingestion.rules import RuleContext, RuleResult, compile_rules, run_duckdb_rules, run_gx_rules
from crowd_platform.common.settings import Settings
from crowd_platform.common.crashpoints import crash_point
from crowd_platform.common.warehouse import transaction

from crowd_platform.ingestion.drops import (DropOutcome, audit_drop, copy_atomic, copy_hashing, data_suffix, one_line, staging_file, utcnow)
from crowd_platform.ingestion.quarantine import quarantine_before_copy, record_duplicate, quarantine_drop

log = logging.getLogger(__name__)


def gx_max_rows(settings: Settings) -> int:
    return settings.config.ingestion.gx_max_rows


def gx_drops_per_run(settings: Settings) -> int:
    """How many drops of one run GX cross-checks. GX costs ~0.4 s per drop whatever its size
    (suite bookkeeping, measured in docs/decisions/004): a live window (5 drops) is always
    fully cross-checked; a backlog of hundreds is sampled evenly instead of taking minutes."""
    return settings.config.ingestion.gx_drops_per_run


def gx_sample(count: int, budget: int) -> set[int]:
    """Indices (of ``count`` drops in processing order) that GX cross-checks: evenly spread."""
    if count <= budget:
        return set(range(count))
    if budget <= 0:
        return set()
    step = count / budget
    return {int(index * step) for index in range(budget)}


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
        return quarantine_before_copy(settings, connection, manifest, manifest_path, data_path, "data file is a symlink", run_id)
    if not data_path.is_file():
        return quarantine_before_copy(settings, connection, manifest, manifest_path, None, "data file named in the manifest is missing", run_id)
    # One read of the bytes: hash while copying into raw/ (a temp name until the hash is known).
    # On an object store the copy lands in local staging scratch first (DuckDB parses a local
    # file); raw/ then gets it in one PUT under its final key.
    remote = not storage.is_local(settings.raw)
    pending_raw = (settings.staging if remote else settings.raw) / f".incoming-{os.getpid()}-{manifest_name}"
    actual_sha = copy_hashing(data_path, pending_raw)
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
        return record_duplicate(settings, connection, manifest, manifest_name, data_path, manifest_path, drop_id, original[0], actual_sha, run_id)

    # WRITE: immutable raw copy first, then the row, then landing may go.
    raw_path = settings.raw / f"{actual_sha}{data_suffix(manifest.file)}"
    if remote:
        parse_source = settings.staging / drop_id / f"source{data_suffix(manifest.file)}"
        storage.move(pending_raw, parse_source)
        storage.copy_file(parse_source, raw_path)
        storage.write_bytes(raw_path.with_name(raw_path.name + MANIFEST_SUFFIX), manifest_bytes)
    else:
        os.replace(pending_raw, raw_path)
        parse_source = raw_path
    raw_manifest = raw_path.with_name(raw_path.name + MANIFEST_SUFFIX)
    if not remote:
        copy_atomic(manifest_path, raw_manifest)
    contract = contract_for(settings.contracts_dir, manifest.operator, manifest.feed)
    received_at = utcnow()
    with transaction(connection):
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
        audit_drop(connection, settings, "drop_received", drop_id, run_id, operator=manifest.operator, feed=manifest.feed,
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
        return fail(reason, "validate", [{"rule": "validation", "engine": "duckdb", "details": one_line(str(error).splitlines()[0], 160)}], staged.rows)
    _write_results(connection, drop_id, results, run_id)
    failed = _failed_rules(results, contract)
    if failed:
        summary = "; ".join(
            f"{item['rule']}{' (' + item['quarantine_reason'] + ')' if item.get('quarantine_reason') else ''}: "
            f"{item.get('unexpected_count') if item.get('unexpected_count') is not None else '-'} rows"
            for item in failed if item["engine"] == "duckdb" or item.get("disagreement")
        )
        return fail(f"contract rules failed: {summary}", "validate", failed, staged.rows)
    with transaction(connection):
        connection.execute("UPDATE drops SET validated_at = ?, rows_loaded = ? WHERE drop_id = ?", [utcnow(), staged.rows, drop_id])
        audit_drop(connection, settings, "drop_validated", drop_id, run_id, rows=staged.rows,
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
    with transaction(connection):
        connection.executemany(
            "INSERT INTO check_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[drop_id, result.rule, result.engine, result.passed, result.element_count, result.unexpected_count,
              result.example_rows, result.details, checked_at, run_id] for result in results],
        )
