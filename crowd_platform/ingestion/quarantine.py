"""Quarantine: a rejected drop's bytes, exactly as received, with a machine-readable report.

Also the operator's way back: ``release_drop`` returns a quarantined drop to landing (after a
contract fix) and ``reject_drop`` records a final rejection; both commit with their audit
record. Reports hold drop ids, rule names, counts and row numbers, never values.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any


from crowd_platform.common import storage
from crowd_platform.common.erasure import (DUPLICATE_OF_DELETED, QUARANTINE_REJECTED, QUARANTINE_RELEASED, QUARANTINED_STAGING,
                                           RAW_MSISDN, DeletedObject, delete_certified, reason_policy)
from crowd_platform.ingestion.landing import UnroutableEntry, is_utf8
from crowd_platform.ingestion.manifest import MANIFEST_SUFFIX, Manifest, drop_id as make_drop_id
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import transaction

from crowd_platform.ingestion.drops import (DropOutcome, audit_drop, copy_atomic, one_line, utcnow)

log = logging.getLogger(__name__)


def _report(path: Path, payload: dict[str, Any]) -> None:
    if not storage.is_local(path):
        storage.write_bytes(path, json.dumps(payload, indent=1, default=str).encode("utf-8"))
        return
    temporary = path.with_name(".report.json.tmp")
    temporary.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    os.replace(temporary, path)


def quarantine_drop(
    settings: Settings, connection, drop_id: str, reason: str, *, stage: str, failed_rules: list[dict[str, Any]],
    run_id: str | None, rows: int | None = None, raw_msisdn: dict[str, Any] | None = None,
) -> DropOutcome:
    """Move a received drop (bytes from raw/, as received) to quarantine/<drop_id>/ with report.json.

    A drop carrying raw MSISDNs (``raw_msisdn``: counts, row numbers, columns; never values) is
    reduced to its report at once: the platform must never store a phone number, so its raw
    copy and staged copy are deleted with certificates instead of being kept in quarantine."""
    drop = connection.execute("SELECT operator, feed, file_name, manifest_name, sha256, bytes, raw_path, contract_id, contract_version, "
                              "window_start FROM drops WHERE drop_id = ?", [drop_id]).fetchone()
    operator, feed, file_name, manifest_name, sha, size, raw_path, contract_id, contract_version, window_start = drop
    target = settings.quarantine / drop_id
    storage.ensure_dir(target)
    raw = settings.resolve(raw_path) or Path("")
    raw_manifest = raw.with_name(raw.name + MANIFEST_SUFFIX)
    if raw_msisdn is None:
        copy_atomic(raw, target / file_name)
    if raw_manifest.exists():  # kept even for a raw-MSISDN drop: a manifest holds no subscriber value
        copy_atomic(raw_manifest, target / manifest_name)
    reason = one_line(reason)
    _report(target / "report.json", {
        "drop_id": drop_id, "operator": operator, "feed": feed, "file": file_name, "manifest": manifest_name,
        "sha256": sha, "bytes": size, "contract_id": contract_id, "contract_version": contract_version,
        "stage": stage, "reason": reason, "rows_loaded": rows, "failed_rules": failed_rules,
        "quarantined_at": utcnow().isoformat(),
        **({"raw_msisdn": {**raw_msisdn, "data_deleted": True, "deletion_reason": RAW_MSISDN}} if raw_msisdn else {}),
        "note": "Row numbers count data rows from 1 (header excluded). Values are never reported.",
    })

    def record() -> None:
        connection.execute(
            "UPDATE drops SET status = 'quarantined', reason = ?, quarantine_path = ?, raw_path = NULL, validated_at = ?, rows_loaded = ? WHERE drop_id = ?",
            [reason, settings.stored(target), utcnow(), rows, drop_id],
        )
        audit_drop(connection, settings, "drop_quarantined", drop_id, run_id, stage=stage, reason=reason,
                   failed_rules=sorted({item["rule"] for item in failed_rules}), data_deleted=raw_msisdn is not None)

    staged = DeletedObject("staging", drop_id, [settings.staging / drop_id], window_start=window_start)
    if raw_msisdn is not None:
        raw_copy = DeletedObject("raw_drop", drop_id, [path for path in (raw, raw_manifest) if raw_path], window_start=window_start)
        delete_certified(settings, connection, [raw_copy, staged], reason=RAW_MSISDN, run_id=run_id, changes=record)
    else:
        delete_certified(settings, connection, [staged], reason=QUARANTINED_STAGING, run_id=run_id, changes=record)
        # The quarantine copy is now the only copy we keep of a rejected drop; raw/ holds accepted ones.
        storage.remove(raw)
        storage.remove(raw_manifest)
    shutil.rmtree(settings.staging / drop_id, ignore_errors=True)
    return DropOutcome(drop_id, operator, feed, "quarantined", reason, failed_rules, rows)


def quarantine_before_copy(settings, connection, manifest: Manifest, manifest_path: Path, data_path: Path | None, reason: str, run_id) -> DropOutcome:
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
    with transaction(connection):
        connection.execute("DELETE FROM drops WHERE drop_id = ?", [drop_id])
        connection.execute(
            "INSERT INTO drops (drop_id, operator, feed, file_name, manifest_name, sha256, bytes, row_count, window_start, window_end, "
            "delivery, key_id, received_at, contract_version, status, reason, quarantine_path, run_id) "
            "VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, ?, 'quarantined', ?, ?, ?)",
            [drop_id, manifest.operator, manifest.feed, manifest.file, manifest_path.name, manifest.row_count, manifest.window_start,
             manifest.window_end, manifest.delivery, manifest.key_id, utcnow(), manifest.contract_version, reason, settings.stored(target), run_id],
        )
        audit_drop(connection, settings, "drop_received", drop_id, run_id, operator=manifest.operator, feed=manifest.feed, manifest_sha256=manifest_sha)
        audit_drop(connection, settings, "drop_quarantined", drop_id, run_id, stage="manifest", reason=reason)
    return DropOutcome(drop_id, manifest.operator, manifest.feed, "quarantined", reason)


def record_duplicate(settings, connection, manifest: Manifest, manifest_name: str, data_path: Path, manifest_path: Path,
                      drop_id: str, original_id: str, sha: str, run_id) -> DropOutcome:
    """Same bytes as a drop already decided: record it, do not process it twice.

    Every byte that arrived is kept: the resent data file and its own manifest (which differs
    from the original's: another name, another created_at...) go to quarantine/<duplicate id>/
    with a report, unless the original's bytes were deleted (then these go too, with proof)."""
    existing = connection.execute("SELECT count(*) FROM drops WHERE drop_id LIKE ?", [drop_id + "%"]).fetchone()[0]
    duplicate_id = f"{drop_id}_dup{existing}" if existing else drop_id
    reason = f"identical bytes to drop {original_id}"
    size = data_path.stat().st_size

    def record(quarantine_path: str | None = None) -> None:
        connection.execute(
            "INSERT INTO drops (drop_id, operator, feed, file_name, manifest_name, sha256, bytes, row_count, window_start, window_end, "
            "delivery, key_id, received_at, contract_version, status, reason, superseded_by, quarantine_path, run_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'duplicate', ?, ?, ?, ?)",
            [duplicate_id, manifest.operator, manifest.feed, manifest.file, manifest_name, sha, size, manifest.row_count,
             manifest.window_start, manifest.window_end, manifest.delivery, manifest.key_id, utcnow(), manifest.contract_version,
             reason, original_id, quarantine_path, run_id],
        )
        audit_drop(connection, settings, "drop_duplicate", duplicate_id, run_id, original=original_id, sha256=sha,
                   kept=quarantine_path is not None)

    if _bytes_kept(connection, original_id):
        target = settings.quarantine / duplicate_id
        storage.ensure_dir(target)
        # Files first, report, then the row (a crash before the row leaves a self-describing folder).
        storage.move(data_path, target / data_path.name)
        storage.move(manifest_path, target / manifest_path.name)
        _report(target / "report.json", {
            "drop_id": duplicate_id, "operator": manifest.operator, "feed": manifest.feed, "file": manifest.file,
            "manifest": manifest_name, "sha256": sha, "bytes": size, "stage": "receive", "reason": reason,
            "duplicate_of": original_id, "files": [data_path.name, manifest_path.name],
            "failed_rules": [{"rule": "not_already_received", "engine": "manifest", "details": reason}],
            "quarantined_at": utcnow().isoformat(),
            "note": "An identical resend: not processed again; kept as it arrived (data and its own manifest).",
        })
        with transaction(connection):
            record(settings.stored(target))
    else:
        # The original's bytes were deleted (retention, rejection, raw MSISDNs): so are these, with proof.
        landing = DeletedObject("landing", duplicate_id, [data_path, manifest_path], window_start=manifest.window_start)
        delete_certified(settings, connection, [landing], reason=DUPLICATE_OF_DELETED, run_id=run_id,
                         changes=record)
    return DropOutcome(duplicate_id, manifest.operator, manifest.feed, "duplicate", reason)


def _bytes_kept(connection, original_id: str) -> bool:
    """Whether the platform still keeps the bytes of a drop (raw/, or its quarantine copy)."""
    status, raw_path = connection.execute("SELECT status, raw_path FROM drops WHERE drop_id = ?", [original_id]).fetchone()
    if status in ("deleted", "rejected"):
        return False
    if raw_path is not None or status in ("received", "released"):
        return True
    return status == "quarantined" and not _data_deleted_on_arrival(connection, original_id)


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
    reason = one_line(f"unroutable: {entry.reason}")
    _report(target / "report.json", {
        "drop_id": drop_id, "operator_folder": operator, "files": printable, "stage": "routing", "reason": reason,
        "failed_rules": [{"rule": "routable", "engine": "manifest", "details": entry.reason}],
    })
    with transaction(connection):
        connection.execute("DELETE FROM drops WHERE drop_id = ?", [drop_id])
        connection.execute(
            "INSERT INTO drops (drop_id, operator, file_name, received_at, status, reason, quarantine_path, run_id) "
            "VALUES (?, ?, ?, ?, 'quarantined', ?, ?, ?)",
            [drop_id, operator, ", ".join(printable)[:500], utcnow(), reason, settings.stored(target), run_id],
        )
        audit_drop(connection, settings, "drop_received", drop_id, run_id, operator_folder=operator, files=len(paths))
        audit_drop(connection, settings, "drop_quarantined", drop_id, run_id, stage="routing", reason=reason)
    return DropOutcome(drop_id, operator, None, "quarantined", reason)


# ---------------------------------------------------------------- release and reject
class QuarantineDecisionError(ValueError):
    """A release or rejection that cannot be made (one line, no values)."""


def quarantined_drops(connection, include_history: bool = False) -> list[dict[str, Any]]:
    """Quarantined drops, newest first; with history also those released or rejected."""
    from crowd_platform.common.warehouse import fetch_dicts

    statuses = ["quarantined", "released", "rejected"] if include_history else ["quarantined"]
    return fetch_dicts(connection, "SELECT drop_id, operator, window_start, status, reason FROM drops "
                                   "WHERE list_contains(?, status) ORDER BY received_at DESC", [statuses])


def drop_record(connection, drop_id: str) -> dict[str, Any]:
    from crowd_platform.common.warehouse import fetch_dicts

    rows = fetch_dicts(connection, "SELECT * FROM drops WHERE drop_id = ?", [drop_id])
    if not rows:
        raise QuarantineDecisionError(f"no drop {drop_id}")
    return rows[0]


def rule_results(connection, drop_id: str) -> list[dict[str, Any]]:
    """The drop's rule verdicts, failures first (rule names, counts, row numbers: no values)."""
    from crowd_platform.common.warehouse import fetch_dicts

    return fetch_dicts(connection, "SELECT rule, engine, passed, unexpected_count, example_rows, details FROM check_results "
                                   "WHERE drop_id = ? ORDER BY passed, rule, engine", [drop_id])


def _quarantined(connection, drop_id: str, decision: str) -> dict[str, Any]:
    drop = drop_record(connection, drop_id)
    if drop["status"] != "quarantined":
        raise QuarantineDecisionError(f"drop {drop_id} is {drop['status']}, only quarantined drops can be {decision}")
    return drop


def _quarantine_copies(settings: Settings, drop: dict[str, Any]) -> list[DeletedObject]:
    """What a decision deletes: every file of the drop's quarantine folder but its reports, and
    any staged copy. (A symlink that arrived as a data file is unlinked, never followed.)"""
    folder = settings.resolve(drop["quarantine_path"])
    copies = []
    if folder is not None and folder.is_dir():
        paths = sorted(p for p in folder.iterdir() if not p.name.startswith("report."))
        copies.append(DeletedObject("quarantine", drop["drop_id"], paths, window_start=drop["window_start"]))
    copies.append(DeletedObject("staging", drop["drop_id"], [settings.staging / drop["drop_id"]], window_start=drop["window_start"]))
    return copies


def _data_deleted_on_arrival(connection, drop_id: str) -> bool:
    """A raw-MSISDN drop: its data was deleted (with a certificate) when it arrived."""
    return connection.execute("SELECT count(*) FROM deletion_certificates WHERE object_id = ? AND policy = ?",
                              [drop_id, reason_policy(RAW_MSISDN)]).fetchone()[0] > 0


def reject_drop(settings: Settings, connection, drop_id: str, reason: str) -> dict[str, Any]:
    """Record a final rejection and delete the drop's quarantined bytes with certificates (a
    rejected drop is never used again); its report stays in quarantine as history."""
    reason = one_line(reason)
    if not reason:
        raise QuarantineDecisionError("a rejection needs a one-line reason")
    drop = _quarantined(connection, drop_id, "rejected")

    def record() -> None:
        connection.execute("UPDATE drops SET status = 'rejected', reason = ? WHERE drop_id = ?",
                           [one_line(f"rejected: {reason}"), drop_id])
        audit_drop(connection, settings, "drop_rejected", drop_id, None, reason=reason, previous_reason=drop["reason"])

    delete_certified(settings, connection, _quarantine_copies(settings, drop), reason=QUARANTINE_REJECTED, run_id=None,
                     changes=record)
    return drop


def release_drop(settings: Settings, connection, drop_id: str) -> tuple[dict[str, Any], str]:
    """Put a quarantined drop back in landing (after a contract fix) for validation again.

    Data first, manifest last (the landing protocol's definition of a complete drop), then the
    status change with its audit record and the certificates of the quarantine copies, which
    are deleted after the commit (the report stays, renamed, as history). Returns the drop and
    its manifest path relative to landing.
    """
    drop = _quarantined(connection, drop_id, "released")
    if _data_deleted_on_arrival(connection, drop_id):
        raise QuarantineDecisionError(f"drop {drop_id} carried raw MSISDNs: its data was deleted on arrival (see its "
                                      "deletion certificate), nothing to release; the operator must pseudonymize and re-drop")
    folder = settings.resolve(drop["quarantine_path"]) or Path("")
    data, manifest = folder / (drop["file_name"] or ""), folder / (drop["manifest_name"] or "")
    if not drop["window_start"] or not drop["manifest_name"] or not data.is_file() or not manifest.is_file():
        raise QuarantineDecisionError(f"drop {drop_id} has no data file and manifest in quarantine "
                                      "(unroutable drops cannot be released; re-drop instead)")
    landing = settings.landing / drop["operator"]
    storage.ensure_dir(landing)
    copy_atomic(data, landing / data.name)
    copy_atomic(manifest, landing / manifest.name)

    def record() -> None:
        connection.execute("UPDATE drops SET status = 'released', reason = NULL, quarantine_path = NULL WHERE drop_id = ?",
                           [drop_id])
        audit_drop(connection, settings, "drop_released", drop_id, None, previous_reason=drop["reason"])

    delete_certified(settings, connection, _quarantine_copies(settings, drop), reason=QUARANTINE_RELEASED, run_id=None,
                     changes=record)
    if (folder / "report.json").exists():
        storage.move(folder / "report.json", folder / "report.released.json")
    return drop, f"{drop['operator']}/{manifest.name}"
