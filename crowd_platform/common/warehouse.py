"""DuckDB warehouse access.

DuckDB allows one read-write process per file (docs/design.md section 9): connections are opened
inside assets only, kept short, and every writer step runs in the Dagster pool
``WAREHOUSE_POOL`` (limit 1 in deploy/dagster.yaml and the test instance).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from crowd_platform.common.settings import SQL_DIR, env

WAREHOUSE_POOL = "duckdb_warehouse"
SCHEMA_DIR = SQL_DIR / "schema"


def read_sql(name: str) -> str:
    """Text of ``sql/<domain>/<name>.sql`` (one model per file, named after the asset it builds),
    e.g. ``read_sql("density/district_density")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


MEMORY_LIMIT_ENV = "CROWD_DUCKDB_MEMORY_LIMIT"
_MEMORY_LIMIT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


def memory_limit() -> str | None:
    """DuckDB's memory limit from CROWD_DUCKDB_MEMORY_LIMIT (e.g. ``4GB``), or None for DuckDB's
    default (80 % of the machine). Several DuckDB processes on one machine (parallel runs,
    workers, tests) each assume that 80 % is theirs; a limit makes large aggregations spill to
    disk instead of swapping the machine."""
    value = (env(MEMORY_LIMIT_ENV) or "").strip()
    if not value:
        return None
    if not _MEMORY_LIMIT.match(value):
        raise ValueError(f"{MEMORY_LIMIT_ENV} must look like 4GB or 512MB, got {value!r}")
    return value


def configure(connection: duckdb.DuckDBPyConnection, share: int = 1) -> None:
    """Settings of every warehouse connection, and of the private in-memory engines that compute
    for it; ``share`` engines running at once split the memory limit between them."""
    # No progress bar in logs (docs/design.md section 9).
    connection.execute("SET enable_progress_bar = false")
    limit = memory_limit()
    if limit:
        if share > 1:
            number, unit = _MEMORY_LIMIT.match(limit).groups()
            limit = f"{max(float(number) / share, 0.01):.2f}{unit}"
        connection.execute(f"SET memory_limit = '{limit}'")  # validated above: digits and a unit only


def private_engine(scratch: Path, share: int = 1, tables: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that computes for the warehouse without holding it (parses, rules,
    presence counting): the warehouse's settings, ``share`` of its memory limit, spilling into a
    folder of its own in ``scratch`` (DuckDB creates it when it spills and removes it on close;
    engines running side by side must not share one, or the first to close removes it).
    ``tables``: name -> Arrow table copied out of the warehouse, created under the same name so
    the models read them as they would there."""
    engine = duckdb.connect()
    configure(engine, share=share)
    scratch.mkdir(parents=True, exist_ok=True)
    spill = scratch / f".spill-{uuid.uuid4().hex[:12]}"
    engine.execute(f"SET temp_directory = '{str(spill).replace(chr(39), chr(39) * 2)}'")
    for name, rows in (tables or {}).items():
        engine.register("warehouse_copy", rows)
        engine.execute(f"CREATE TABLE {name} AS SELECT * FROM warehouse_copy")  # names are the caller's literals
        engine.unregister("warehouse_copy")
    return engine


def apply_schema(connection: duckdb.DuckDBPyConnection) -> None:
    """Create every warehouse table that does not exist yet (idempotent DDL in sql/schema/)."""
    for ddl in sorted(SCHEMA_DIR.glob("*.sql")):
        connection.execute(ddl.read_text(encoding="utf-8"))


@contextmanager
def connect(path: Path, read_only: bool = False, wait_s: float = 120.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, waiting while another process holds the write lock.

    A waiting reader is normal (a run is writing); the wait is bounded (``wait_s``) so a stuck
    lock surfaces as a one-line error instead of a hang. Tries every 50-250 ms: with steps of
    several runs taking turns on the file, a longer sleep leaves it idle between them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    attempt = 0
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=read_only and path.exists())
            break
        except duckdb.IOException as error:  # lock held by another process
            if time.monotonic() >= deadline:
                raise RuntimeError(f"warehouse {path.name} is locked by another process") from error
            attempt += 1
            time.sleep(min(0.05 * attempt, 0.25))
    try:
        configure(connection)
        if not read_only:
            apply_schema(connection)
        yield connection
    finally:
        connection.close()


def fetch_dicts(connection: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    cursor = connection.execute(sql, params or [])
    columns = [column[0] for column in cursor.description]
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


@contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT around a change and its audit record; ROLLBACK on any exception.

    The one way the platform writes several statements atomically, so no block can forget its
    ROLLBACK. A rollback that itself fails (an interrupted or closed connection) must not hide
    the error that caused it: DuckDB discards the open transaction with the connection anyway.
    """
    connection.execute("BEGIN TRANSACTION")
    try:
        yield connection
    except BaseException:
        try:
            connection.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise
    connection.execute("COMMIT")


def insert_rows(connection: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]] | dict[str, Any]) -> int:
    """INSERT rows given as {column: value} dicts, columns named (never positional).

    A schema change that adds or reorders a column then cannot shift values into the wrong
    column silently; a missing column fails with its name. Table and column names come from
    code, never from input.
    """
    if isinstance(rows, dict):
        rows = [rows]
    if not rows:
        return 0
    columns = list(rows[0])
    if any(list(row) != columns for row in rows):
        raise ValueError(f"insert into {table}: every row must have the same columns in the same order")
    column_list = ", ".join(f'"{column}"' for column in columns)
    placeholders = ", ".join("?" * len(columns))
    connection.executemany(f'INSERT INTO "{table}" ({column_list}) VALUES ({placeholders})',
                           [[row[column] for column in columns] for row in rows])
    return len(rows)
