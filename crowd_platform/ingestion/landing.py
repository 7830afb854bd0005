"""Scanning the landing area: which drops are complete, which window they belong to, and
which entries cannot be routed at all.

Used by the sensor (which must never open the warehouse) and by ``operator_drops`` (which
selects the drops of its window range). Only ``os.scandir`` and small manifest reads: a scan
of 10 000 waiting files costs milliseconds, and reading manifests is bounded per call.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from crowd_platform.common import storage
from crowd_platform.common.contracts import operator_feeds
from crowd_platform.common.text import has_control_chars
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
    return name.endswith(MANIFEST_SUFFIX) and is_utf8(name) and not has_control_chars(name) and not entry.is_symlink()


def link_problem(entry) -> str | None:
    """'symlink' or 'hard link' when a landing entry is a link, never followed; None for a plain file.

    A hard link (a regular file with more than one name) may share its bytes with a file
    outside landing (raw/, another operator's folder, anything on the same filesystem)."""
    if entry.is_symlink():
        return "symlink"
    info = entry.stat(follow_symlinks=False)
    if stat.S_ISREG(info.st_mode) and getattr(info, "st_nlink", 1) > 1:
        return "hard link"
    return None


def name_problem(name: str) -> str | None:
    """Why a landing file name can never be taken (shown, logged or quarantined safely), or None."""
    if not is_utf8(name):
        return "file name is not UTF-8"
    if has_control_chars(name):
        return "file name has control characters"
    return None


def _refuse_folder_link(result: ScanResult, operator_entry: os.DirEntry, skip_keys: set[str] | frozenset[str]) -> None:
    """A symlinked operator folder is never followed: the link itself (an entry of landing/, so
    operator_dir "") is quarantined once, keyed by its own mtime so a rescan does not ask again."""
    name = operator_entry.name
    key = entry_key("", name, operator_entry.stat(follow_symlinks=False).st_mtime_ns)
    result.keys_present.add(key)
    if key not in skip_keys:
        result.unroutable.append(UnroutableEntry("", [name], "operator folder is a symlink"))


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
            _refuse_folder_link(result, operator_entry, skip_keys)
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
    folder_problems: dict[str, str | None] = {}
    folder_feeds: dict[str, dict[str, str]] = {}  # operator -> feed -> kind, read once per scan
    for _mtime, operator_dir, name, key in candidates:
        entries = folders[operator_dir]
        if operator_dir not in folder_problems:
            folder_problems[operator_dir] = _folder_problem(operator_dir, contracts_dir)
            folder_feeds[operator_dir] = operator_feeds(contracts_dir, operator_dir) if folder_problems[operator_dir] is None else {}
        result.manifests_read += 1
        problem = folder_problems[operator_dir] or _manifest_link_problem(entries[name])
        if problem:
            result.unroutable.append(UnroutableEntry(operator_dir, _with_data_file(name, entries), problem))
            continue
        try:
            payload = storage.entry_bytes(entries[name])
        except FileNotFoundError:
            continue  # taken by a run meanwhile
        try:
            manifest = parse_manifest_bytes(payload, folder_operator=operator_dir, window_minutes=window_minutes,
                                            feeds=folder_feeds[operator_dir])
        except ManifestError as error:
            result.unroutable.append(UnroutableEntry(operator_dir, _with_data_file(name, entries), str(error)))
            continue
        data_entry = entries.get(manifest.file)
        referenced[operator_dir].add(manifest.file)
        link = link_problem(data_entry) if data_entry is not None else None
        if link:
            result.unroutable.append(UnroutableEntry(operator_dir, [name, manifest.file], f"data file is a {link}"))
            continue
        if partition_range and not partition_range[0] <= manifest.window_start < partition_range[1]:
            result.unroutable.append(UnroutableEntry(operator_dir, [name] + ([manifest.file] if data_entry else []), "window outside the emergency period"))
            continue
        if window_range and not window_range[0] <= manifest.window_start < window_range[1]:
            continue
        result.routable.append(RoutableDrop(operator_dir, name, manifest, hashlib.sha256(payload).hexdigest(), key))


def _folder_problem(operator_dir: str, contracts_dir: Path) -> str | None:
    if not is_utf8(operator_dir) or has_control_chars(operator_dir):
        return "operator folder name is not printable UTF-8"
    if not operator_feeds(contracts_dir, operator_dir):
        return "no data contract for this operator folder"
    return None


def _manifest_link_problem(entry) -> str | None:
    link = link_problem(entry)  # a symlinked manifest is no candidate; a hard-linked one is refused here
    return f"manifest is a {link}" if link else None


def _report_unroutable_names(
    result: ScanResult, folders: dict[str, dict[str, os.DirEntry]], referenced: dict[str, set[str]],
    skip_keys: set[str] | frozenset[str],
) -> None:
    """Entries no manifest can ever route: names not UTF-8 or with control characters, symlinks,
    hard links. Each is keyed by name and mtime, so it is requested once, not at every tick."""
    for operator_dir, entries in folders.items():
        for name, entry in sorted(entries.items()):
            if name in referenced[operator_dir]:
                continue
            link = link_problem(entry)
            reason = name_problem(name) or (f"{link} in landing" if link else None)
            if reason:
                key = entry_key(operator_dir, name, entry.stat(follow_symlinks=False).st_mtime_ns)
                result.keys_present.add(key)
                if key not in skip_keys:
                    result.unroutable.append(UnroutableEntry(operator_dir, [name], reason))


def _with_data_file(manifest_name: str, entries: dict) -> list[str]:
    """The manifest plus the data file it is named after, when that file is there."""
    data_name = manifest_name[: -len(MANIFEST_SUFFIX)]
    return [manifest_name] + ([data_name] if data_name in entries else [])
