"""Search files for subscriber-level values that must never be there.

Used by tests (a planted key must be found, clean files must be clean), by `sunset` (nothing
left after the purge) and by the full-demo scan of Dagster storage, compute logs, reports and
outbox. Looks inside containers that hide bytes from a naive grep: gzip files, and SQLite
databases (Dagster's storage), whose blobs may be zlib-compressed (Dagster compresses run and
snapshot bodies). Hits never carry the needle itself, only its index and a short fingerprint,
so a scan report is itself free of personal data.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"
GZIP_MAGIC = b"\x1f\x8b"
HEX64 = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_MAX_DECOMPRESSED = 512 * 1024 * 1024  # refuse to inflate a gzip bomb while scanning


@dataclass(frozen=True)
class Hit:
    path: str
    where: str            # file | gzip | sqlite:<table>.<column> | sqlite-zlib:<table>.<column>
    needle_index: int
    fingerprint: str      # first 8 hex of sha256(needle): identifies it without revealing it
    offset: int | None = None


def fingerprint(needle: str | bytes) -> str:
    raw = needle.encode() if isinstance(needle, str) else needle
    return hashlib.sha256(raw).hexdigest()[:8]


def iter_files(paths: Iterable) -> Iterator:
    """Every file under each root: a local path, or an object-storage location (a UPath: every
    object under its prefix, so a scan proves a bucket clean as well as a disk)."""
    from crowd_platform.common import storage

    for root in paths:
        if hasattr(root, "fs") and not isinstance(root, Path):
            yield from storage.files_under(root)
            continue
        root = Path(root)
        if root.is_file():
            yield root
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    yield path


_HEX_RUN = re.compile(rb"[0-9a-f]{64,}")
_HEX_KEY = re.compile(rb"[0-9a-f]{64}")


class _Needles:
    """Finds needles in bytes in time linear in the bytes, whatever the number of needles.

    Pseudonyms (64 lowercase hex) are looked up slice by slice in every run of 64+ hex
    characters (keys stored back to back are found too); anything else goes through one regex
    alternation. A regex alternation of thousands of keys costs needles x bytes (measured: 2 000
    keys over 2 MB, 1.35 s; retention and sunset sample tens of thousands of keys).
    """

    def __init__(self, needles: list[bytes]):
        self.index = {needle: position for position, needle in enumerate(needles)}
        self.keys = {needle for needle in self.index if _HEX_KEY.fullmatch(needle)}
        others = [needle for needle in self.index if needle not in self.keys]
        self.others = _needle_pattern(others) if others else None

    def find(self, data: bytes) -> Iterator[tuple[int, int]]:
        """(needle index, offset) of every occurrence."""
        if self.keys:
            for run in _HEX_RUN.finditer(data):
                chunk = run.group(0)
                for start in range(len(chunk) - 63):
                    piece = chunk[start:start + 64]
                    if piece in self.keys:
                        yield self.index[piece], run.start() + start
        if self.others is not None:
            for match in self.others.finditer(data):
                yield self.index[match.group(0)], match.start()


def contains_any(data: bytes, needles: Iterable[str | bytes]) -> bool:
    """True when any needle occurs in ``data``."""
    encoded = [needle.encode() if isinstance(needle, str) else bytes(needle) for needle in needles]
    return next(_Needles([needle for needle in encoded if needle]).find(data), None) is not None


def _needle_pattern(needles: list[bytes]) -> re.Pattern[bytes]:
    return re.compile(b"|".join(re.escape(needle) for needle in sorted(set(needles), key=len, reverse=True)))


def _inflate_gzip(data: bytes) -> bytes | None:
    try:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = decompressor.decompress(data, _MAX_DECOMPRESSED)
        return out
    except zlib.error:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return None


def _inflate_zlib(data: bytes) -> bytes | None:
    try:
        return zlib.decompressobj().decompress(data, _MAX_DECOMPRESSED)
    except zlib.error:
        return None


def _scan_sqlite(path: Path, needles: _Needles) -> Iterator[tuple[str, int, int | None]]:
    """Every text/blob cell of every table, blobs also inflated when they are zlib data."""
    uri = f"file:{path}?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        return
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            try:
                columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
                cursor = connection.execute(f'SELECT * FROM "{table}"')
            except sqlite3.Error:
                continue
            for row in cursor:
                for column, value in zip(columns, row):
                    if isinstance(value, str):
                        value = value.encode("utf-8", "surrogatepass")
                    if not isinstance(value, bytes):
                        continue
                    for needle_index, _ in needles.find(value):
                        yield f"sqlite:{table}.{column}", needle_index, None
                    if value[:1] in (b"\x78",):  # zlib header byte
                        inflated = _inflate_zlib(value)
                        if inflated:
                            for needle_index, _ in needles.find(inflated):
                                yield f"sqlite-zlib:{table}.{column}", needle_index, None
    except sqlite3.DatabaseError:
        return
    finally:
        connection.close()


def scan_for_subscriber_values(paths: Iterable, needles: Iterable[str | bytes]) -> list[Hit]:
    """Every occurrence of any needle in the files under ``paths`` (local or object storage).

    Each file is searched as raw bytes (covers plain logs, JSON, Parquet/DuckDB pages, a
    SQLite file's pages and its -wal), then, by content rather than extension, inflated if
    it is gzip and walked cell by cell if it is SQLite.
    """
    encoded = [needle.encode() if isinstance(needle, str) else bytes(needle) for needle in needles]
    encoded = [needle for needle in encoded if needle]
    if not encoded:
        return []
    matcher = _Needles(encoded)
    hits: list[Hit] = []
    for path in iter_files(paths):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for needle_index, offset in matcher.find(data):
            hits.append(Hit(str(path), "file", needle_index, fingerprint(encoded[needle_index]), offset))
        if data.startswith(GZIP_MAGIC):
            inflated = _inflate_gzip(data)
            if inflated:
                for needle_index, offset in matcher.find(inflated):
                    hits.append(Hit(str(path), "gzip", needle_index, fingerprint(encoded[needle_index]), offset))
        if data.startswith(SQLITE_MAGIC) and isinstance(path, Path):  # Dagster's storage is local
            for where, needle_index, offset in _scan_sqlite(path, matcher):
                hits.append(Hit(str(path), where, needle_index, fingerprint(encoded[needle_index]), offset))
    return hits


def scan_for_hex_keys(paths: Iterable, allowed: set[str] | None = None) -> dict[str, int]:
    """Count 64-hex tokens (the shape of a subscriber key) per file, ignoring ``allowed`` ones.

    ``allowed`` holds the platform's own legitimate 64-hex values (file sha256s, audit hashes),
    which share the shape. Returns path -> count of unexplained tokens (only files with any).
    """
    allowed_bytes = {value.encode() for value in (allowed or set())}
    found: dict[str, int] = {}
    for path in iter_files(paths):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        blobs = [data]
        if data.startswith(GZIP_MAGIC):
            inflated = _inflate_gzip(data)
            if inflated:
                blobs.append(inflated)
        count = sum(1 for blob in blobs for match in HEX64.finditer(blob) if match.group(0) not in allowed_bytes)
        if count:
            found[str(path)] = count
    return found
