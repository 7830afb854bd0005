"""The storage root: a local folder (default, CROWD_HOME) or an S3-compatible bucket.

landing/, raw/, quarantine/, lake/ and outbox/ live under the storage root. With the
default root every location is a plain ``pathlib.Path`` and every helper below does exactly
what the platform always did (temp file + fsync + rename). With ``CROWD_STORAGE_URL`` (or
``storage.url`` in config/platform.yaml) set to e.g. ``s3://bucket/prefix``, locations are
``upath.UPath`` objects over fsspec/s3fs: no hand-written S3 client. Endpoint and
credentials come from the standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION) or ``storage.options``; none is ever logged.

Atomicity on an object store: one PUT (or a completed multipart upload) makes an object
visible whole or not at all, so the final key is written only with complete bytes: never a
half-written Parquet under its final name. A "move" is copy then delete (the copy is
complete before the source goes). The warehouse, dagster_home, staging scratch and the
geo cache stay on local disk (docs/decisions/006-object-storage.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO, Iterator, Union

from upath import UPath

Location = Union[Path, UPath]
# DuckDB gets the fsspec filesystem under its own protocol name, so that a DuckDB that can
# autoload httpfs never takes s3:// paths away from the configured endpoint and credentials.
DUCKDB_PROTOCOL = "crowdstore"
_CHUNK = 1 << 20


def is_local(path: Location) -> bool:
    return isinstance(path, Path)


def storage_root(url: str, options: dict[str, Any] | None = None) -> Location:
    """The root location for a storage URL: a local path or ``protocol://bucket/prefix``."""
    if "://" not in url or url.startswith("file://"):
        return Path(url.removeprefix("file://")).expanduser().resolve()
    # Listings are never cached: the sensor and the runs must see objects come and go.
    return UPath(url.rstrip("/"), **{"use_listings_cache": False, **(options or {})})


def location(value: str, options: dict[str, Any] | None = None) -> Location:
    """A recorded absolute location (a local path or a URL) back as a Location."""
    return storage_root(value, options) if "://" in value else Path(value)


# ---------------------------------------------------------------- folders
def ensure_dir(path: Location) -> None:
    """Create a local folder; object stores have no folders (keys carry the prefix)."""
    if is_local(path):
        path.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class ObjectEntry:
    """An ``os.DirEntry``-like listing entry of an object store (no symlinks there)."""

    name: str
    location: UPath
    kind: str
    mtime_ns: int

    @property
    def path(self) -> str:
        return str(self.location)

    def is_dir(self, follow_symlinks: bool = True) -> bool:
        return self.kind == "directory"

    def is_file(self, follow_symlinks: bool = True) -> bool:
        return self.kind == "file"

    def is_symlink(self) -> bool:
        return False

    def stat(self, follow_symlinks: bool = True) -> SimpleNamespace:
        mode = stat_module.S_IFDIR if self.is_dir() else stat_module.S_IFREG
        return SimpleNamespace(st_mode=mode, st_mtime_ns=self.mtime_ns, st_mtime=self.mtime_ns / 10**9)

    def read_bytes(self) -> bytes:
        return self.location.read_bytes()


def _mtime_ns(info: dict[str, Any]) -> int:
    value = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    if value is None:
        return 0
    # Whole seconds: a listing (ListObjectsV2) and a HEAD report the same object time at
    # different precisions, and landing keys must not change between the two.
    if hasattr(value, "timestamp"):
        return int(value.timestamp()) * 10**9
    return int(float(value)) * 10**9


def scandir(folder: Location) -> list:
    """Entries of a folder: ``os.DirEntry`` locally, :class:`ObjectEntry` on an object store.

    s3fs lists with ListObjectsV2 and follows its continuation tokens (pages of 1000)."""
    if is_local(folder):
        with os.scandir(folder) as entries:
            return list(entries)
    fs = folder.fs
    try:
        infos = fs.ls(folder.path, detail=True)
    except FileNotFoundError:
        return []
    entries = []
    for info in infos:
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        if not name or info["name"].rstrip("/") == folder.path.rstrip("/"):
            continue
        entries.append(ObjectEntry(name, folder / name, "directory" if info.get("type") == "directory" else "file", _mtime_ns(info)))
    return entries


def entry_bytes(entry) -> bytes:
    return entry.read_bytes() if isinstance(entry, ObjectEntry) else Path(entry.path).read_bytes()


def mtime_ns(path: Location) -> int:
    """Modification time (of the link itself, locally): raises OSError when absent."""
    if is_local(path):
        return os.lstat(path).st_mtime_ns
    try:
        return _mtime_ns(path.fs.info(path.path))
    except FileNotFoundError as error:
        raise FileNotFoundError(str(path)) from error


def is_symlink(path: Location) -> bool:
    return is_local(path) and path.is_symlink()


# ---------------------------------------------------------------- reading
def open_binary(path: Location) -> BinaryIO:
    return open(path, "rb") if is_local(path) else path.fs.open(path.path, "rb")


def iter_chunks(path: Location) -> Iterator[bytes]:
    with open_binary(path) as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            yield chunk


def sha256_and_size(path: Location) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in iter_chunks(path):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


# ---------------------------------------------------------------- writing (atomic)
def _local_temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def write_bytes(path: Location, payload: bytes) -> None:
    """Atomic write: temp + fsync + rename locally; one PUT on an object store."""
    if is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _local_temporary(path)
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return
    path.fs.pipe_file(path.path, payload)


def create_exclusive(path: UPath, payload: bytes) -> bool:
    """Create an object only if absent (conditional PUT, If-None-Match: *). True if created.

    A server that ignores the condition overwrites instead: callers write deterministic bytes
    per key (the outbox's request ids), so a lost race still leaves the same content."""
    if path.exists():
        return False
    try:
        path.fs.pipe_file(path.path, payload, mode="create")
    except OSError as error:
        if "precondition" in str(error).lower() or getattr(error, "errno", None) == 22:
            return False
        raise
    return True


def copy_file(source: Location, target: Location) -> None:
    """Copy bytes so that ``target`` appears complete or not at all."""
    if is_local(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        with open_binary(source) as reader, open(temporary, "wb") as writer:
            shutil.copyfileobj(reader, writer, _CHUNK)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(temporary, target)
    elif is_local(source):
        # put_file: one PUT, or a multipart upload that becomes visible only once completed.
        target.fs.put_file(str(source), target.path)
    elif type(source.fs) is type(target.fs) and source.storage_options == target.storage_options:
        target.fs.copy(source.path, target.path)  # server-side copy
    else:
        with open_binary(source) as reader:
            target.fs.pipe_file(target.path, reader.read())


def copy_hashing(source: Location, target: Path) -> str:
    """Copy into a local file with fsync; return the sha256 of the bytes copied."""
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_binary(source) as reader, open(target, "wb") as writer:
        for chunk in iter(lambda: reader.read(_CHUNK), b""):
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def move(source: Location, target: Location) -> None:
    """Rename locally (atomic on one filesystem); elsewhere a complete copy, then delete."""
    if is_local(source) and is_local(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return
    copy_file(source, target)
    remove(source)


# ---------------------------------------------------------------- deleting
def remove(path: Location, missing_ok: bool = True) -> None:
    """Remove one file or object (locally, absent raises FileNotFoundError unless missing_ok;
    an object-store DELETE of an absent key succeeds)."""
    if is_local(path):
        path.unlink(missing_ok=missing_ok)
        return
    try:
        path.fs.rm_file(path.path)
    except FileNotFoundError:
        pass


def remove_tree(path: Location) -> None:
    """Remove a folder tree (or every object under a prefix), or a single file."""
    if is_local(path):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        return
    if path.fs.isdir(path.path):
        path.fs.rm(path.path, recursive=True)
    else:
        remove(path)


def files_under(path: Location) -> list[Location]:
    """Every file under a folder (or the file itself), sorted."""
    if is_local(path):
        if path.is_file():
            return [path]
        return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    fs = path.fs
    if fs.isfile(path.path):
        return [path]
    root = path.path.rstrip("/")
    return [path / name[len(root) + 1:] for name in sorted(fs.find(root))]


# ---------------------------------------------------------------- DuckDB
def duckdb_path(connection, path: Location) -> str:
    """A path DuckDB can read: local as is; objects through the fsspec filesystem registered
    on ``connection`` under :data:`DUCKDB_PROTOCOL` (DuckDB cannot download httpfs here)."""
    if is_local(path):
        return str(path)
    fs = path.fs
    if not _is_registered(connection):
        adapter = type("CrowdStoreFileSystem", (type(fs),), {"protocol": (DUCKDB_PROTOCOL,)})
        connection.register_filesystem(adapter(**fs.storage_options))
    return f"{DUCKDB_PROTOCOL}://{path.path}"


def _is_registered(connection) -> bool:
    return any(DUCKDB_PROTOCOL in str(name) for name in connection.list_filesystems())
