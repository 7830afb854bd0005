"""Ingest one drop: raw copy, drops row, staging Parquet, contract rules, verdict.

A landing file is removed only after its bytes are safely in ``raw/``; a drop that fails
any blocking rule goes to quarantine.py, one that passes waits in staging for publish.py.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.common import storage
from crowd_platform.common.contracts import EVENTS_KIND, Contract, contract_for
from crowd_platform.ingestion.interrupts import reraise_if_interrupt
from crowd_platform.ingestion.layout import ParseError, StagedFile, stage_drop
from crowd_platform.ingestion.manifest import DEFAULT_KEY_ID_PATTERN, MANIFEST_SUFFIX, Manifest, drop_id as make_drop_id
from crowd_platform.ingestion.cell_review import review_reason
from crowd_platform.ingestion.volume import PROFILE_ENGINE, VolumeVerdict, check_volume, record_profile
from crowd_platform.ingestion.rules import RuleContext, RuleResult, compile_rules, run_duckdb_rules, run_gx_rules
from crowd_platform.common.settings import Settings
from crowd_platform.common.crashpoints import crash_point
from crowd_platform.common.warehouse import private_engine, transaction

from crowd_platform.ingestion.drops import (DropOutcome, audit_drop, copy_atomic, copy_hashing, data_suffix, one_line, staging_file, utcnow)
from crowd_platform.ingestion.quarantine import quarantine_before_copy, record_duplicate, quarantine_drop

log = logging.getLogger(__name__)

# One pass over the bytes: parse the drop once into a temp table, write staging Parquet from it
# and run the DuckDB rules over it instead of reading the staged Parquet back (layout.stage_drop
# keep_table; both paths tested). Measured in the same runs on 2 shared cores (docs/performance.md,
# ingest): faster at 5 M rows (15.8 s vs 18.5 s), but not at 10 M (19.1 s vs 17.1 s on the
# quietest run; 21.5 vs 23.1 and 37.3 vs 29.8 on others), at twice the peak memory (2.0 GB vs
# 0.9 GB at 10 M: the drop is held in DuckDB's memory). Off: write staging, then scan it again.
ONE_PASS_STAGING = False
STAGED_TABLE = "ingest_staged_drop"
_GX_LOCK = threading.Lock()

# The contract's quarantine_reason of a rule that finds phone numbers (subscriber_key_not_msisdn).
RAW_MSISDN_RULE_REASON = "raw_msisdn"


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


@dataclass(frozen=True)
class _ReceivedDrop:
    """A drop whose bytes are in raw/ and whose 'received' row is committed: what the later steps need."""

    settings: Settings
    connection: duckdb.DuckDBPyConnection
    run_id: str | None
    manifest: Manifest
    drop_id: str
    sha256: str
    bytes: int
    parse_source: Path        # local file DuckDB parses (raw/ itself, or staging scratch on an object store)
    contract: Contract | None

    @property
    def staging_target(self) -> Path:
        return staging_file(self.settings, self.drop_id, self.manifest.feed)


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

    Steps: receive (raw copy, drops row, audit) -> manifest checks -> parse into staging ->
    validate -> verdict; each step either hands on or returns the drop's outcome.
    ``gx_cross_check`` False skips the Great Expectations run for this drop (the compiled
    DuckDB rules, which decide, always run): see gx_drops_per_run. Raises FileNotFoundError when
    the drop left landing before it was received.
    """
    outcome = ingest_drops(settings, lambda: nullcontext(connection),
                           [PendingDrop(operator_dir, manifest_name, manifest, gx_cross_check)], run_id=run_id)[0]
    if outcome is None:
        raise FileNotFoundError(f"{manifest_name} left landing before it was received")
    return outcome


@dataclass(frozen=True)
class PendingDrop:
    """A complete drop in landing, as the landing scan found it, and whether GX cross-checks it."""

    operator_dir: Path
    manifest_name: str
    manifest: Manifest
    gx_cross_check: bool = True


@dataclass(frozen=True)
class _Checked:
    """What a drop's parse and rules produced away from the warehouse: the staged file or the
    parse error, then the rule results or the error that stopped them (None: not run)."""

    parsed: StagedFile | Exception
    results: list[RuleResult] | Exception | None


OpenWarehouse = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]


def ingest_drops(settings: Settings, open_warehouse: OpenWarehouse, pending: list[PendingDrop], *,
                 run_id: str | None, parse_workers: int = 1, chunk: int = 32) -> list[DropOutcome | None]:
    """``ingest_drop`` for the drops of a run: one outcome per pending drop, in order (None: the
    drop left landing before it was received, e.g. taken by a concurrent release).

    The warehouse is open only for the writes (``open_warehouse`` opens it; the asset passes a
    fresh connection each time, so other runs' steps can take it in between). Per chunk of drops:
      1. warehouse open: each drop is received and its manifest checked, in order (rows and the
         audit chain take one writer at a time); the registry rows of the chunk's operators are
         copied out (the unknown-cell rule reads them);
      2. warehouse closed: each received drop is parsed and its contract rules run in a private
         in-memory DuckDB holding that copy, on ``parse_workers`` threads (DuckDB releases the
         GIL, and a gzip CSV decompresses on one thread, so a live window's operators are parsed
         side by side; a parse writes only its staging Parquet);
      3. warehouse open: each drop's volume check and verdict, in order.
    """
    outcomes: list[DropOutcome | None] = [None] * len(pending)
    size = max(chunk, 1)
    for begin in range(0, len(pending), size):
        received: list[tuple[int, _ReceivedDrop]] = []
        with open_warehouse() as connection:
            for index in range(begin, min(begin + size, len(pending))):
                drop = _receive_and_check(settings, connection, pending[index], run_id)
                if isinstance(drop, _ReceivedDrop):
                    received.append((index, drop))
                else:
                    outcomes[index] = drop
            if not received:
                continue
            registry = _registry_copy(connection, sorted({drop.manifest.operator for _, drop in received}))
        checked = _check_all([(drop, pending[index].gx_cross_check) for index, drop in received], registry, parse_workers)
        with open_warehouse() as connection:
            for (index, drop), result in zip(received, checked):
                outcomes[index] = _finish(replace(drop, connection=connection), result)
    return outcomes


def _receive_and_check(settings: Settings, connection: duckdb.DuckDBPyConnection, item: PendingDrop,
                       run_id: str | None) -> _ReceivedDrop | DropOutcome | None:
    try:
        drop = _receive(settings, connection, item.operator_dir, item.manifest_name, item.manifest, run_id)
    except FileNotFoundError:
        return None  # taken between the landing scan and now: not ours any more
    if isinstance(drop, DropOutcome):
        return drop
    return _check_manifest(drop) or drop


def _registry_copy(connection: duckdb.DuckDBPyConnection, operators: list[str]):
    """The bts_registry rows of these operators, as Arrow (what the unknown-cell rule reads)."""
    return connection.sql("SELECT * FROM bts_registry WHERE list_contains(?, operator)", params=[operators]).to_arrow_table()


def _check_all(drops: list[tuple[_ReceivedDrop, bool]], registry, workers: int) -> list[_Checked]:
    if workers > 1 and len(drops) > 1:
        from concurrent.futures import ThreadPoolExecutor

        share = min(workers, len(drops))
        with ThreadPoolExecutor(max_workers=share, thread_name_prefix="parse") as pool:
            # map() re-raises a worker's exception here: only stop signals get that far.
            return list(pool.map(lambda item: _check(item[0], registry, item[1], share), drops))
    return [_check(drop, registry, gx, 1) for drop, gx in drops]


def _check(drop: _ReceivedDrop, registry, gx_cross_check: bool, share: int) -> _Checked:
    """Parse into staging, then every contract rule, in a private engine; nothing is written to
    the warehouse (failures are returned for _finish to record; stop signals are raised)."""
    engine = private_engine(drop.settings.staging, share=share, tables={"bts_registry": registry})
    try:
        parsed = _parse(drop, engine, STAGED_TABLE if ONE_PASS_STAGING else None)
        if isinstance(parsed, Exception):
            return _Checked(parsed, None)
        try:
            results = validate_staged(drop.settings, engine, drop.contract, drop.manifest, drop.staging_target,
                                      parsed.rows, gx=gx_cross_check, table=parsed.table)
        except Exception as error:  # noqa: BLE001 - recorded and quarantined by _finish
            reraise_if_interrupt(error, "validating a drop")
            results = error
        return _Checked(parsed, results)
    finally:
        engine.close()


def _finish(drop: _ReceivedDrop, checked: _Checked) -> DropOutcome:
    """With the warehouse: a parse failure or rules that could not run quarantine; else the
    volume check and the verdict."""
    staged = _stage_outcome(drop, checked.parsed)
    if isinstance(staged, DropOutcome):
        return staged
    if isinstance(checked.results, Exception):
        return _validation_failed(drop, checked.results, staged.rows)
    volume = _check_volume(drop)
    if isinstance(volume, DropOutcome):
        return volume
    return _verdict(drop, checked.results, staged.rows, volume)


def _quarantine(drop: _ReceivedDrop, reason: str, stage: str, failed: list[dict[str, Any]] | None = None,
                rows: int | None = None, raw_msisdn: dict[str, Any] | None = None) -> DropOutcome:
    return quarantine_drop(drop.settings, drop.connection, drop.drop_id, reason, stage=stage, failed_rules=failed or [],
                           run_id=drop.run_id, rows=rows, raw_msisdn=raw_msisdn)


def _raw_msisdn(drop: _ReceivedDrop, failed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the report keeps of a drop carrying raw MSISDNs (a failed rule whose contract
    quarantine_reason is raw_msisdn): rules, columns, counts, row numbers and the original
    file's sha256, never a value. None when no such rule failed."""
    hits = [item for item in failed if item.get("quarantine_reason") == RAW_MSISDN_RULE_REASON and not item["passed"]]
    if not hits:
        return None
    columns = {spec.name: spec.column for spec in compile_rules(drop.contract)}
    deciding = [item for item in hits if item["engine"] == "duckdb"] or hits
    return {
        "rules": sorted({item["rule"] for item in hits}),
        "columns": sorted({columns[item["rule"]] for item in hits if columns.get(item["rule"])}),
        "offending_rows": max(item.get("unexpected_count") or 0 for item in deciding),
        "row_numbers": sorted({int(row) for item in deciding for row in item.get("example_rows") or []}),
        "original_sha256": drop.sha256,
        "original_bytes": drop.bytes,
    }


def _receive(settings: Settings, connection: duckdb.DuckDBPyConnection, operator_dir: Path, manifest_name: str,
             manifest: Manifest, run_id: str | None) -> _ReceivedDrop | DropOutcome:
    """WRITE: immutable raw copy first, then the row, then landing may go.

    Returns the outcome instead when the drop stops here: a data file unusable before any
    copy (quarantined as it arrived) or bytes already ingested (a duplicate).
    """
    manifest_path = operator_dir / manifest_name
    data_path = operator_dir / manifest.file
    manifest_bytes = manifest_path.read_bytes()
    if data_path.is_symlink():
        return quarantine_before_copy(settings, connection, manifest, manifest_path, data_path, "data file is a symlink", run_id)
    if not data_path.is_file():
        return quarantine_before_copy(settings, connection, manifest, manifest_path, None, "data file named in the manifest is missing", run_id)
    if storage.is_local(data_path) and data_path.stat().st_nlink > 1:
        # Linked after the landing scan: its bytes could change under another name after the checks.
        return quarantine_before_copy(settings, connection, manifest, manifest_path, data_path, "data file is a hard link", run_id)
    # One read of the bytes: hash while copying into raw/ (a temp name until the hash is known).
    # On an object store the copy lands in local staging scratch first (DuckDB parses a local
    # file); raw/ then gets it in one PUT under its final key.
    remote = not storage.is_local(settings.raw)
    pending_raw = (settings.staging if remote else settings.raw) / f".incoming-{os.getpid()}-{manifest_name}"
    actual_sha = copy_hashing(data_path, pending_raw)
    actual_bytes = pending_raw.stat().st_size
    drop_id = make_drop_id(manifest.operator, manifest.feed, manifest.window_start, manifest.delivery, actual_sha)
    original_id = _ingested_before(connection, actual_sha, drop_id, run_id)
    if original_id is not None:
        pending_raw.unlink()
        return record_duplicate(settings, connection, manifest, manifest_name, data_path, manifest_path, drop_id, original_id, actual_sha, run_id)
    raw_path, parse_source = _store_raw(settings, manifest, manifest_path, manifest_bytes, pending_raw, actual_sha, drop_id, remote)
    contract = contract_for(settings.contracts_dir, manifest.operator, manifest.feed)
    drop = _ReceivedDrop(settings, connection, run_id, manifest, drop_id, actual_sha, actual_bytes, parse_source, contract)
    _record_received(drop, manifest_name, raw_path)
    storage.remove(data_path, missing_ok=False)
    storage.remove(manifest_path, missing_ok=False)
    crash_point("ingest_received")
    return drop


def _ingested_before(connection: duckdb.DuckDBPyConnection, sha256: str, drop_id: str, run_id: str | None) -> str | None:
    """drop_id of an earlier drop with the same bytes, unless this one is a retry of it."""
    original = connection.execute(
        "SELECT drop_id, status, run_id FROM drops WHERE sha256 = ? AND status IN ('accepted','quarantined','superseded','rejected','deleted','received','released') "
        "ORDER BY received_at LIMIT 1",
        [sha256],
    ).fetchone()
    # A 'received' row of the same drop from an earlier run is an interrupted ingest: redo it.
    # From this very run, it is the same bytes landing twice (e.g. under another file name).
    retry = original is not None and original[0] == drop_id and original[1] in ("received", "released") and original[2] != run_id
    return original[0] if original and not retry else None


def _store_raw(settings: Settings, manifest: Manifest, manifest_path: Path, manifest_bytes: bytes, pending_raw: Path,
               sha256: str, drop_id: str, remote: bool) -> tuple[Path, Path]:
    """Put the hashed copy and its manifest under their final raw/ keys: (raw path, file to parse)."""
    raw_path = settings.raw / f"{sha256}{data_suffix(manifest.file)}"
    raw_manifest = raw_path.with_name(raw_path.name + MANIFEST_SUFFIX)
    if remote:
        parse_source = settings.staging / drop_id / f"source{data_suffix(manifest.file)}"
        storage.move(pending_raw, parse_source)
        storage.copy_file(parse_source, raw_path)
        storage.write_bytes(raw_manifest, manifest_bytes)
    else:
        os.replace(pending_raw, raw_path)
        parse_source = raw_path
        copy_atomic(manifest_path, raw_manifest)
    return raw_path, parse_source


def _record_received(drop: _ReceivedDrop, manifest_name: str, raw_path: Path) -> None:
    """The 'received' drops row (replacing one of an interrupted ingest) and its audit record, one transaction."""
    settings, connection, manifest, contract = drop.settings, drop.connection, drop.manifest, drop.contract
    received_at = utcnow()
    with transaction(connection):
        connection.execute("DELETE FROM drops WHERE drop_id = ?", [drop.drop_id])
        connection.execute("DELETE FROM check_results WHERE drop_id = ?", [drop.drop_id])
        connection.execute(
            "INSERT INTO drops (drop_id, operator, feed, file_name, manifest_name, sha256, bytes, row_count, window_start, "
            "window_end, delivery, key_id, received_at, contract_id, contract_version, status, raw_path, run_id, feed_kind) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'received', ?, ?, ?)",
            [drop.drop_id, manifest.operator, manifest.feed, manifest.file, manifest_name, drop.sha256, drop.bytes, manifest.row_count,
             manifest.window_start, manifest.window_end, manifest.delivery, manifest.key_id, received_at,
             contract.contract_id if contract else None, manifest.contract_version, settings.stored(raw_path), drop.run_id,
             contract.kind if contract else None],
        )
        audit_drop(connection, settings, "drop_received", drop.drop_id, drop.run_id, operator=manifest.operator, feed=manifest.feed,
               sha256=drop.sha256, bytes=drop.bytes, declared_rows=manifest.row_count, delivery=manifest.delivery)


def _key_id_matches(manifest: Manifest, contract) -> bool:
    if manifest.key_id is None or contract is None:
        return True  # no key (a cell list) / no contract (its own check fails first)
    pattern = contract.key_id_pattern or DEFAULT_KEY_ID_PATTERN
    return re.fullmatch(pattern, manifest.key_id) is not None


def _check_manifest(drop: _ReceivedDrop) -> DropOutcome | None:
    """Manifest checks recorded like rules (engine 'manifest'), so every decision has a row.

    Quarantines on the first failing check; None when all pass.
    """
    manifest, contract = drop.manifest, drop.contract
    manifest_checks = [
        ("manifest_sha256_matches", drop.sha256 == manifest.sha256, "sha256 of the bytes differs from the manifest"),
        ("manifest_bytes_match", drop.bytes == manifest.bytes, f"file has {drop.bytes} bytes, manifest says {manifest.bytes}"),
        ("contract_exists", contract is not None, "no data contract for this operator and feed"),
        ("contract_version_compatible", contract is not None and _major(contract.version) == _major(manifest.contract_version),
         f"manifest contract_version {manifest.contract_version} is not compatible with contract {contract.version if contract else '-'}"),
        ("key_id_matches_contract", _key_id_matches(manifest, contract),
         "manifest pseudonymization.key_id does not match the contract's key_id_pattern"),
    ]
    _write_results(drop.connection, drop.drop_id, [
        RuleResult(name, "manifest", ok, None, None, [], "ok" if ok else message) for name, ok, message in manifest_checks
    ], drop.run_id)
    for name, ok, message in manifest_checks:
        if not ok:
            return _quarantine(drop, message, "manifest", [{"rule": name, "engine": "manifest", "details": message}])
    return None


def _parse(drop: _ReceivedDrop, connection: duckdb.DuckDBPyConnection, keep_table: str | None) -> StagedFile | Exception:
    """Parse per contract layout into staging (WAP "write"), on ``connection`` (a private engine).
    Writes nothing to the warehouse: a failure is returned, for _stage_outcome to record; a stop
    signal is raised."""
    try:
        return stage_drop(connection, drop.parse_source, drop.contract, drop.staging_target, keep_table=keep_table)
    except Exception as error:  # noqa: BLE001 - one bad drop must never kill the run
        reraise_if_interrupt(error, "parsing a drop")
        return error


def _stage_outcome(drop: _ReceivedDrop, parsed: StagedFile | Exception) -> StagedFile | DropOutcome:
    """A parse failure quarantines the drop with its one-line reason; a staged file hands on."""
    if not isinstance(parsed, Exception):
        return parsed
    error = parsed
    if not isinstance(error, ParseError):
        log.error("unexpected parse failure for drop %s (%s)", drop.drop_id, type(error).__name__)
        error = ParseError(f"unexpected reader failure ({type(error).__name__})")
    _write_results(drop.connection, drop.drop_id, [RuleResult("parse", "duckdb", False, None, None, [], str(error))], drop.run_id)
    return _quarantine(drop, f"parse failed: {error}", "parse", [{"rule": "parse", "engine": "duckdb", "details": str(error)}])


def _validation_failed(drop: _ReceivedDrop, error: Exception, rows: int) -> DropOutcome:
    """AUDIT could not run (the rules raised): the drop is quarantined with the error's type."""
    log.warning("validation failed to run for drop %s: %s", drop.drop_id, type(error).__name__)
    reason = f"validation could not run ({type(error).__name__})"
    return _quarantine(drop, reason, "validate", [{"rule": "validation", "engine": "duckdb", "details": one_line(str(error).splitlines()[0], 160)}], rows)


def _check_volume(drop: _ReceivedDrop) -> VolumeVerdict | DropOutcome | None:
    """SHAPE: an events drop against its operator's usual volume at this day type and time of day."""
    if drop.contract is None or drop.contract.kind != EVENTS_KIND:
        return None
    try:
        return check_volume(drop.connection, drop.settings, drop.contract, drop.manifest, drop.staging_target, drop.drop_id)
    except Exception as error:  # noqa: BLE001 - quarantine, never crash the run
        reraise_if_interrupt(error, "profiling a drop")
        log.warning("volume check failed to run for drop %s: %s", drop.drop_id, type(error).__name__)
        return _quarantine(drop, f"volume check could not run ({type(error).__name__})", "validate",
                           [{"rule": "volume", "engine": PROFILE_ENGINE, "details": one_line(str(error).splitlines()[0], 160)}])


def _hold(drop: _ReceivedDrop, volume: VolumeVerdict | None) -> tuple[str, str, list[dict[str, Any]]] | None:
    """Valid by the contract's rules, yet not to be applied unseen: a blocking volume flag, or a
    cell list that would retire too many of the operator's current cells. (reason, stage, rules)"""
    if volume and volume.blocking:
        return volume.flag, "validate", [
            {"rule": result.rule, "engine": PROFILE_ENGINE, "passed": False, "element_count": result.element_count,
             "details": result.details} for result in volume.results if not result.passed]
    if drop.manifest.feed == "cells":
        reason = review_reason(drop.connection, drop.contract, drop.manifest.operator, drop.staging_target, drop.drop_id)
        if reason is not None:
            return reason, "review", [{"rule": "max_retired_share", "engine": "duckdb", "passed": False, "details": reason}]
    return None


def _verdict(drop: _ReceivedDrop, results: list[RuleResult], rows: int, volume: VolumeVerdict | None = None) -> DropOutcome:
    """Record the rule results, then quarantine on any failed rule or hold (see _hold), or mark
    the drop validated, with its volume profile and flag."""
    _write_results(drop.connection, drop.drop_id, results + (volume.results if volume else []), drop.run_id)
    failed = _failed_rules(results, drop.contract)
    if failed:
        return _quarantine(drop, f"contract rules failed: {_failure_summary(failed)}", "validate", failed, rows,
                           raw_msisdn=_raw_msisdn(drop, failed))
    held = _hold(drop, volume)
    if held is not None:
        reason, stage, held_rules = held
        return _quarantine(drop, reason, stage, held_rules, rows)
    flag = volume.flag if volume else None
    with transaction(drop.connection):
        drop.connection.execute("UPDATE drops SET validated_at = ?, rows_loaded = ?, volume_flag = ? WHERE drop_id = ?",
                                [utcnow(), rows, flag, drop.drop_id])
        if volume:
            record_profile(drop.connection, volume.profile, drop.run_id)
        audit_drop(drop.connection, drop.settings, "drop_validated", drop.drop_id, drop.run_id, rows=rows,
                   rules=len({result.rule for result in results}), engines=sorted({result.engine for result in results}),
                   volume_flag=flag)
    return DropOutcome(drop.drop_id, drop.manifest.operator, drop.manifest.feed, "validated", reason=flag, rows=rows)


def _failure_summary(failed: list[dict[str, Any]]) -> str:
    """'rule (reason): N rows; ...' over the deciding (DuckDB) failures and engine disagreements."""
    return "; ".join(
        f"{item['rule']}{' (' + item['quarantine_reason'] + ')' if item.get('quarantine_reason') else ''}: "
        f"{item.get('unexpected_count') if item.get('unexpected_count') is not None else '-'} rows"
        for item in failed if item["engine"] == "duckdb" or item.get("disagreement")
    )


def _major(version: str) -> str:
    return str(version).split(".")[0]


def validate_staged(settings: Settings, connection, contract: Contract, manifest: Manifest, parquet: Path, rows: int,
                    gx: bool = True, table: str | None = None) -> list[RuleResult]:
    """Every contract rule over the staged drop: ``table`` (the temp table stage_drop kept) when
    given, else the staging Parquet; both hold the same rows in the same order."""
    specs = compile_rules(contract)
    context = RuleContext(manifest.window_start, manifest.window_end, manifest.row_count, manifest.operator)
    results = run_duckdb_rules(connection, parquet, specs, context, table=table)
    if gx and rows <= gx_max_rows(settings):
        known = None
        if any(spec.kind == "unknown_cell_share" for spec in specs):
            evaluated = next(result for result in results if result.rule in {s.name for s in specs if s.kind == "unknown_cell_share"})
            if evaluated.evaluated:
                known = [row[0] for row in connection.execute(
                    "SELECT DISTINCT cell_id FROM bts_registry WHERE operator = ? AND valid_from < ? AND (valid_to IS NULL OR valid_to > ?)",
                    [manifest.operator, manifest.window_end, manifest.window_start]).fetchall()]
        frame = connection.execute(f"SELECT * FROM read_parquet('{str(parquet).replace(chr(39), chr(39) * 2)}')").df()
        with _GX_LOCK:  # drops are checked on several threads; GX's contexts are not known to be thread-safe
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
    """Every result of the drop in ONE multi-row INSERT (one statement per row cost 12-14 ms a drop)."""
    if not results:
        return
    checked_at = utcnow()
    placeholders = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(results))
    parameters = [value for result in results for value in (
        drop_id, result.rule, result.engine, result.passed, result.element_count, result.unexpected_count,
        result.example_rows, result.details, checked_at, run_id)]
    with transaction(connection):
        connection.execute(f"INSERT INTO check_results VALUES {placeholders}", parameters)
