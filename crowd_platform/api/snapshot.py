"""The server's own in-memory copy of the published datasets (decision 017).

The warehouse is one DuckDB file that pipeline writers hold read-write; DuckDB refuses a second
process while they do. The server therefore never queries the warehouse: a refresh attaches it
read-only for the time of a copy (retrying while a writer holds the lock), copies the tables
marked published in the platform contract plus the public geography into a fresh in-memory
database, detaches, and swaps the new copy in. Internal tables are never copied, so no request
can reach them. When the warehouse stays locked, the last copy keeps being served and every
response says its age (``X-Snapshot-Age``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.api.datasets import ALERTS, published_tables
from crowd_platform.common.settings import SQL_DIR, Settings

log = logging.getLogger(__name__)

API_SQL = SQL_DIR / "api"


def api_sql(name: str, **identifiers: str) -> str:
    """Text of ``sql/api/<name>.sql``; ``{table}``-style slots take identifiers chosen by code
    (contract names, column names of the copy), quoted here; values are always bound."""
    text = (API_SQL / f"{name}.sql").read_text(encoding="utf-8")
    for key, value in identifiers.items():
        text = text.replace("{" + key + "}", value if value == "NULL" else '"' + value.replace('"', '""') + '"')
    return text


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def warehouse_signature(path: Path) -> tuple[int, int, int, int]:
    """mtime and size of the warehouse file and its WAL: any committed change moves one of them."""
    def stat(target: Path) -> tuple[int, int]:
        try:
            info = target.stat()
            return info.st_mtime_ns, info.st_size
        except FileNotFoundError:
            return 0, -1
    return (*stat(path), *stat(path.with_name(path.name + ".wal")))


@dataclass
class Snapshot:
    """One immutable copy. ``version`` keys the response cache."""

    connection: duckdb.DuckDBPyConnection
    version: int
    taken_at: float                      # time.time() of the copy
    signature: tuple[int, int, int, int]
    tables: frozenset[str]               # published tables present in the copy
    _geometry: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _memo: dict[Any, Any] = field(default_factory=dict)
    _memo_locks: dict[Any, threading.Lock] = field(default_factory=dict)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for the calling thread (a DuckDB connection is not shared across threads)."""
        return self.connection.cursor()

    def rows(self, sql: str, params: dict[str, Any] | list[Any] | None = None) -> list[dict[str, Any]]:
        cursor = self.cursor()
        try:
            result = cursor.execute(sql, params or {})
            columns = [column[0] for column in result.description]
            return [dict(zip(columns, row)) for row in result.fetchall()]
        finally:
            cursor.close()

    def memo(self, key: Any, build: Any) -> Any:
        """A value derived from this copy, built once (other threads wait for the first build)."""
        found = self._memo.get(key)
        if found is not None:
            return found
        with self._lock:
            lock = self._memo_locks.setdefault(key, threading.Lock())
        with lock:
            found = self._memo.get(key)
            if found is None:
                found = build()
                self._memo[key] = found
            return found

    def geometries(self, level: str) -> dict[str, Any]:
        """district_code -> shapely geometry of one level (built once per copy)."""
        with self._lock:
            cached = self._geometry.get(level)
            if cached is None:
                from shapely import from_wkb

                rows = self.rows(api_sql("district_geometry"), {"level": level})
                cached = {row["district_code"]: from_wkb(bytes(row["geometry_wkb"])) for row in rows}
                self._geometry[level] = cached
            return cached

    def geojson_geometries(self, level: str) -> dict[str, str]:
        """district_code -> GeoJSON geometry text (6 decimals, about 10 cm), built once per copy."""
        key = "json:" + level
        with self._lock:
            cached = self._geometry.get(key)
        if cached is None:
            from shapely import set_precision, to_geojson

            cached = {code: to_geojson(set_precision(geometry, 1e-6)) for code, geometry in self.geometries(level).items()}
            with self._lock:
                self._geometry[key] = cached
        return cached

    def close(self) -> None:
        try:
            self.connection.close()
        except duckdb.Error:
            pass


class WarehouseLocked(RuntimeError):
    """The warehouse could not be opened read-only (a writer holds it)."""


def build_snapshot(settings: Settings, version: int, retries: int = 3, wait_s: float = 0.2) -> Snapshot:
    """Copy the published tables and public geography into a new in-memory database."""
    path = settings.warehouse_path
    signature = warehouse_signature(path)
    wanted = published_tables(settings)
    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SET enable_progress_bar = false")
        last_error: Exception | None = None
        for attempt in range(retries):
            if not path.exists():
                last_error = FileNotFoundError(path.name)
                break
            try:
                connection.execute(api_sql("attach_warehouse").replace("{path}", _literal(str(path))))
                last_error = None
                break
            except duckdb.Error as error:  # lock held by a writer, or a file being replaced
                last_error = error
                time.sleep(wait_s * (attempt + 1))
        if last_error is not None:
            raise WarehouseLocked(f"warehouse {path.name} could not be opened read-only") from last_error
        try:
            present = {row[0] for row in connection.execute(api_sql("warehouse_tables")).fetchall()}
            copied = []
            for table in wanted:
                if table in present:
                    connection.execute(api_sql("copy_published", table=table))
                    copied.append(table)
            if "districts" in present:
                connection.execute(api_sql("copy_districts"))
            else:
                connection.execute("CREATE TABLE main.districts (district_code VARCHAR, level VARCHAR, level_rank INTEGER, "
                                   "name VARCHAR, parent_code VARCHAR, area_km2 DOUBLE, land_area_km2 DOUBLE, geometry_wkb BLOB)")
            if ALERTS in copied and "site_places" in present:
                connection.execute(api_sql("copy_places"))
            else:
                connection.execute("CREATE TABLE main.places (place_id VARCHAR, lon DOUBLE, lat DOUBLE)")
        finally:
            connection.execute("DETACH wh")
    except BaseException:
        connection.close()
        raise
    return Snapshot(connection, version, time.time(), signature, frozenset(copied))


class SnapshotManager:
    """Holds the current copy; refreshes it when the warehouse file changes (checked at most every
    ``check_interval_s``, in a background thread so no request waits for a copy)."""

    def __init__(self, settings: Settings, check_interval_s: float = 2.0) -> None:
        self.settings = settings
        self.check_interval_s = check_interval_s
        self._current: Snapshot | None = None
        self._version = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.last_attempt: float = 0.0

    @property
    def current(self) -> Snapshot | None:
        return self._current

    def refresh(self, force: bool = False) -> bool:
        """Copy again if the warehouse changed (or ``force``); False when it could not be read."""
        with self._lock:
            self.last_attempt = time.time()
            current = self._current
            signature = warehouse_signature(self.settings.warehouse_path)
            if current is not None and not force and signature == current.signature and self.last_error is None:
                return True
            try:
                snapshot = build_snapshot(self.settings, self._version + 1)
            except WarehouseLocked as error:
                self.last_error = str(error)
                log.warning("published copy not refreshed: %s", error)
                return False
            self._version += 1
            self._current = snapshot
            self.last_error = None
        # The previous copy may still serve requests in flight; DuckDB closes it when collected.
        return True

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="published-copy-refresh", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.check_interval_s):
            try:
                self.refresh()
            except Exception as error:  # never let the refresher die; keep serving the last copy
                self.last_error = type(error).__name__
                log.warning("published copy refresh failed: %s", type(error).__name__)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def age_s(self) -> float | None:
        current = self._current
        return None if current is None else max(0.0, time.time() - current.taken_at)

    def status(self) -> dict[str, Any]:
        current = self._current
        return {
            "version": current.version if current else None,
            "taken_at": datetime.fromtimestamp(current.taken_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if current else None,
            "age_s": round(self.age_s(), 1) if current else None,
            "stale": self.last_error is not None,
            "datasets": sorted(current.tables) if current else [],
        }


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=_default, ensure_ascii=False).encode("utf-8")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(type(value).__name__)


__all__ = ["Snapshot", "SnapshotManager", "WarehouseLocked", "api_sql", "build_snapshot", "dumps",
           "warehouse_signature"]
