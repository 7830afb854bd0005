"""Scanning the landing area: which drops are complete, which window they belong to, and
which entries cannot be routed at all.

Used by the sensor (which must never open the warehouse) and by ``operator_drops`` (which
selects the drops of its window range). Only ``os.scandir`` and small manifest reads: a scan
of 10 000 waiting files costs milliseconds, and reading manifests is bounded per call.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from crowd_platform.common import storage
from crowd_platform.common.contracts import contract_for
from crowd_platform.ingestion.manifest import MANIFEST_SUFFIX, Manifest, ManifestError, parse_manifest_bytes


@dataclass(frozen=True)
class RoutableDrop:
    operator_dir: str
    manifest_name: str
    manifest: Manifest
    manifest_sha256: str     # hash of the manifest bytes: run keys change when a manifest does
    key: str                 # entry_key of the manifest (sensor cursor)


@dataclass
class UnroutableEntry:
    """Landing entries that no window run can take; names as filesystem bytes (hex)."""

    operator_dir: str
    names: list[str]
    reason: str

    def to_config(self) -> dict:
        return {
            "operator_dir_hex": os.fsencode(self.operator_dir).hex(),
            "names_hex": [os.fsencode(name).hex() for name in self.names],
            "reason": self.reason,
        }

    @staticmethod
    def from_config(value: dict) -> "UnroutableEntry":
        return UnroutableEntry(
            operator_dir=os.fsdecode(bytes.fromhex(value["operator_dir_hex"])),
            names=[os.fsdecode(bytes.fromhex(name)) for name in value["names_hex"]],
            reason=str(value["reason"]),
        )


@dataclass
class ScanResult:
    routable: list[RoutableDrop] = field(default_factory=list)
    unroutable: list[UnroutableEntry] = field(default_factory=list)
    manifests_seen: int = 0
    manifests_read: int = 0
    keys_present: set[str] = field(default_factory=set)


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def entry_key(operator_dir: str, name: str, mtime_ns: int) -> str:
    """Short stable key of a landing entry version (cursor-friendly)."""
    return hashlib.sha1(os.fsencode(f"{operator_dir}/{name}") + str(mtime_ns).encode()).hexdigest()[:16]


def scan_landing(
    landing: Path,
    contracts_dir: Path,
    *,
    window_minutes: int = 15,
    skip_keys: set[str] | frozenset[str] = frozenset(),
    max_manifests: int | None = None,
    window_range: tuple[datetime, datetime] | None = None,
    partition_range: tuple[datetime, datetime] | None = None,
) -> ScanResult:
    """Classify landing entries. Manifests in ``skip_keys`` are not read (already requested).

    Steps: list the operator folders and their manifests -> read the oldest unrequested
    manifests and route them -> report the entries no manifest can ever route.
    """
    result = ScanResult()
    if not landing.is_dir():
        return result
    folders, candidates = _list_landing(landing, result, skip_keys)
    # Oldest first across all operators: a page holds whole windows as they arrived.
    candidates.sort()
    if max_manifests is not None:
        candidates = candidates[:max_manifests]
    referenced = _manifest_owned_names(folders)
    _route_candidates(result, candidates, folders, referenced, contracts_dir, window_minutes=window_minutes,
                      window_range=window_range, partition_range=partition_range)
    _report_unroutable_names(result, folders, referenced, skip_keys)
    return result


def _is_manifest(name: str, entry: os.DirEntry) -> bool:
    return name.endswith(MANIFEST_SUFFIX) and is_utf8(name) and not entry.is_symlink()


def _list_landing(
    landing: Path, result: ScanResult, skip_keys: set[str] | frozenset[str],
) -> tuple[dict[str, dict[str, os.DirEntry]], list[tuple[int, str, str, str]]]:
    """Operator folders' visible entries, and the manifests to read: (mtime_ns, operator_dir, name, key).

    Counts every manifest in ``result`` and flags symlinked operator folders as unroutable.
    """
    # os.scandir locally; on an object store a paged listing (common/storage.py).
    operator_entries = sorted(storage.scandir(landing), key=lambda entry: entry.name)
    folders: dict[str, dict[str, os.DirEntry]] = {}
    candidates: list[tuple[int, str, str, str]] = []  # (mtime_ns, operator_dir, name, key)
    for operator_entry in operator_entries:
        operator_dir = operator_entry.name
        if operator_entry.is_symlink():
            result.unroutable.append(UnroutableEntry(operator_dir, [], "operator folder is a symlink"))
            continue
        if not operator_entry.is_dir(follow_symlinks=False) or operator_dir.startswith("."):
            continue
        files = storage.scandir(landing / operator_dir)
        entries = {entry.name: entry for entry in files if not entry.name.startswith(".")}
        folders[operator_dir] = entries
        for name, entry in entries.items():
            if not _is_manifest(name, entry):
                continue
            result.manifests_seen += 1
            mtime_ns = entry.stat(follow_symlinks=False).st_mtime_ns
            key = entry_key(operator_dir, name, mtime_ns)
            result.keys_present.add(key)
            if key not in skip_keys:
                candidates.append((mtime_ns, operator_dir, name, key))
    return folders, candidates


def _manifest_owned_names(folders: dict[str, dict[str, os.DirEntry]]) -> dict[str, set[str]]:
    """Every manifest (read this tick or not) and its data file are someone's: not orphans."""
    referenced: dict[str, set[str]] = {operator_dir: set() for operator_dir in folders}
    for operator_dir, entries in folders.items():
        for name in entries:
            if _is_manifest(name, entries[name]):
                referenced[operator_dir].update(_with_data_file(name, entries))
    return referenced


def _route_candidates(
    result: ScanResult,
    candidates: list[tuple[int, str, str, str]],
    folders: dict[str, dict[str, os.DirEntry]],
    referenced: dict[str, set[str]],
    contracts_dir: Path,
    *,
    window_minutes: int,
    window_range: tuple[datetime, datetime] | None,
    partition_range: tuple[datetime, datetime] | None,
) -> None:
    """Read each candidate manifest: routable, unroutable (with a reason), or another window's."""
    known: dict[str, bool] = {}
    for _mtime, operator_dir, name, key in candidates:
        entries = folders[operator_dir]
        if operator_dir not in known:
            known[operator_dir] = is_utf8(operator_dir) and contract_for(contracts_dir, operator_dir, "events") is not None
        result.manifests_read += 1
        if not known[operator_dir]:
            result.unroutable.append(UnroutableEntry(operator_dir, _with_data_file(name, entries), "no data contract for this operator folder"))
            continue
        try:
            payload = storage.entry_bytes(entries[name])
        except FileNotFoundError:
            continue  # taken by a run meanwhile
        try:
            manifest = parse_manifest_bytes(payload, folder_operator=operator_dir, window_minutes=window_minutes)
        except ManifestError as error:
            result.unroutable.append(UnroutableEntry(operator_dir, _with_data_file(name, entries), str(error)))
            continue
        data_entry = entries.get(manifest.file)
        referenced[operator_dir].add(manifest.file)
        if data_entry is not None and data_entry.is_symlink():
            result.unroutable.append(UnroutableEntry(operator_dir, [name, manifest.file], "data file is a symlink"))
            continue
        if partition_range and not partition_range[0] <= manifest.window_start < partition_range[1]:
            result.unroutable.append(UnroutableEntry(operator_dir, [name] + ([manifest.file] if data_entry else []), "window outside the emergency period"))
            continue
        if window_range and not window_range[0] <= manifest.window_start < window_range[1]:
            continue
        result.routable.append(RoutableDrop(operator_dir, name, manifest, hashlib.sha256(payload).hexdigest(), key))


def _report_unroutable_names(
    result: ScanResult, folders: dict[str, dict[str, os.DirEntry]], referenced: dict[str, set[str]],
    skip_keys: set[str] | frozenset[str],
) -> None:
    """Entries no manifest can ever route: symlinks and names that are not UTF-8."""
    for operator_dir, entries in folders.items():
        for name, entry in sorted(entries.items()):
            if name in referenced[operator_dir]:
                continue
            if not is_utf8(name) or entry.is_symlink():
                key = entry_key(operator_dir, name, entry.stat(follow_symlinks=False).st_mtime_ns)
                result.keys_present.add(key)
                if key not in skip_keys:
                    reason = "file name is not UTF-8" if not is_utf8(name) else "symlink in landing"
                    result.unroutable.append(UnroutableEntry(operator_dir, [name], reason))


def _with_data_file(manifest_name: str, entries: dict) -> list[str]:
    """The manifest plus the data file it is named after, when that file is there."""
    data_name = manifest_name[: -len(MANIFEST_SUFFIX)]
    return [manifest_name] + ([data_name] if data_name in entries else [])
