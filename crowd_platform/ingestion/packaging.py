"""Operator side: cut an export into drops the platform accepts (``crowd-platform package``).

Operators export a day (or any span) at once, and cell lists as versioned tables; the platform
takes one drop per feed and window, each with its manifest written last. This module reads the
export exactly as ingestion will (the contract's layout, header matched by name, every value as
text, times parsed by the contract's format and zone: ``layout``), so a row lands in the window
ingestion will check it against. Rows are copied as exported (their own column names and
spelling); nothing is computed from subscriber values and none is ever printed.

- Event feeds: one drop per window holding the rows whose time falls in it. A row whose time
  does not parse stops the packaging with its row numbers (the export is wrong, not the window).
- Cell lists with validity columns (FlowKit's ``date_of_first_service`` / ``date_of_last_service``,
  inclusive last day): one full list per distinct first day, holding the rows valid that local
  day, as of local midnight; the registry versions cells from these snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from crowd_platform.common.contracts import CELLS_KIND, Contract
from crowd_platform.ingestion import layout

WINDOW_COLUMN = "__window_start"
ROW_COLUMN = "__row"


class PackagingError(ValueError):
    """An export that cannot be cut into drops; one line, row numbers only (never a value)."""


@dataclass(frozen=True)
class PackedDrop:
    data_path: Path
    manifest_path: Path
    window_start: datetime
    rows: int


def read_export(connection: duckdb.DuckDBPyConnection, export: Path, contract: Contract,
                extra_columns: dict[str, str] | None = None) -> pl.DataFrame:
    """The export's rows, every column as text in file order, plus ``extra_columns`` (name -> SQL
    over the physical columns) and the data row number (from 1). Layout problems are the same
    one-line reasons ingestion gives."""
    if str(contract.layout.get("format", "csv")) != "csv":
        raise PackagingError("only CSV exports can be packaged (a Parquet export is one drop as it is)")
    expected = layout.physical_columns(contract)
    try:
        source = layout._csv_source(export, contract, expected, str(contract.layout.get("compression", "none")),
                                    float(contract.custom.get("max_decompressed_ratio", 200)))
        extras = "".join(f", {sql} AS {layout.sql_ident(name)}" for name, sql in (extra_columns or {}).items())
        return connection.sql(f"SELECT *, row_number() OVER () AS {ROW_COLUMN}{extras} FROM {source}").pl()
    except layout.ParseError as error:
        raise PackagingError(f"{export.name}: {error}") from None
    except duckdb.Error as error:
        raise PackagingError(f"{export.name}: {layout._duckdb_reason(error)}") from None


def _unparsed(frame: pl.DataFrame, column: str, what: str) -> None:
    bad = frame.filter(pl.col(column).is_null())[ROW_COLUMN].to_list()
    if bad:
        first = ", ".join(str(row) for row in bad[:5])
        raise PackagingError(f"{len(bad)} row(s) have a {what} that does not parse with the contract's format "
                             f"(data rows {first}{', ...' if len(bad) > 5 else ''})")


def _write(landing: Path, contract: Contract, frame: pl.DataFrame, window_start: datetime, window_minutes: int, *,
           operator: str, feed: str, key_id: str | None, delivery: int, created_at: datetime) -> PackedDrop:
    from crowd_platform.simulator.drops import write_drop  # the drop and manifest writer shared with the simulator

    rows = frame.drop([name for name in frame.columns if name.startswith("__")])
    data_path, manifest_path = write_drop(
        landing, contract, rows, window_start=window_start, window_end=window_start + timedelta(minutes=window_minutes),
        delivery=delivery, key_id=key_id, created_at=created_at, feed=feed, operator=operator,
    )
    return PackedDrop(data_path, manifest_path, window_start, rows.height)


def package_events(export: Path, contract: Contract, landing: Path, *, key_id: str, window_minutes: int = 15,
                   delivery: int = 1, created_at: datetime | None = None) -> list[PackedDrop]:
    """One drop per window of an event export, into ``landing/<operator>/``, oldest first."""
    operator, feed = str(contract.operator), contract.feed
    spec = contract.column("event_time")
    if spec.is_constant or spec.transform_sources:
        raise PackagingError("the contract's event_time must be a column of the export")
    moment = layout._time_expression(layout.sql_ident(spec.physical_name or spec.name), spec, contract)
    # Windows are UTC-aligned, like the platform's partitions.
    window = f"time_bucket(INTERVAL '{int(window_minutes)} minutes', timezone('UTC', {moment}))"
    with duckdb.connect() as connection:
        frame = read_export(connection, export, contract, {WINDOW_COLUMN: window})
    if frame.is_empty():
        raise PackagingError(f"{export.name}: header only, no rows")
    _unparsed(frame, WINDOW_COLUMN, f"{spec.physical_name or spec.name} time")
    stamp = created_at or datetime.now(timezone.utc)
    drops = []
    for (start,), rows in sorted(frame.partition_by(WINDOW_COLUMN, as_dict=True, maintain_order=True).items()):
        window_start = start.replace(tzinfo=timezone.utc)
        drops.append(_write(landing, contract, rows.sort(ROW_COLUMN), window_start, window_minutes, operator=operator,
                            feed=feed, key_id=key_id, delivery=delivery, created_at=stamp))
    return drops


def _local_midnight_utc(day: date, zone: str, window_minutes: int) -> datetime:
    """Local midnight of ``day`` as a UTC window start (aligned down to the window grid)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)
    return midnight - timedelta(minutes=midnight.minute % window_minutes, seconds=midnight.second)


def package_cells(export: Path, contract: Contract, landing: Path, *, valid_from_column: str, valid_to_column: str | None,
                  local_timezone: str, window_minutes: int = 15, delivery: int = 1,
                  created_at: datetime | None = None) -> list[PackedDrop]:
    """One full cell list per validity start of a versioned export: the rows valid on that local
    day (first day <= day <= last day, an empty last day = still in service), as of local midnight."""
    if contract.kind != CELLS_KIND:
        raise PackagingError(f"contract {contract.contract_id} is not a cell-list feed")
    columns = {"__from": valid_from_column, **({"__to": valid_to_column} if valid_to_column else {})}
    declared = {spec.physical_name or spec.name: spec for spec in contract.columns}
    for column in columns.values():
        if column not in declared or declared[column].logical_type != "date":
            raise PackagingError(f"{column!r} is not a date column of contract {contract.contract_id}")
    parsed = {key: f"CAST(try_strptime(NULLIF(trim({layout.sql_ident(name)}), ''), "
                   f"{layout.sql_literal(str(declared[name].options.get('format', '%Y-%m-%d')))}) AS DATE)"
              for key, name in columns.items()}
    with duckdb.connect() as connection:
        frame = read_export(connection, export, contract, parsed)
    _unparsed(frame, "__from", valid_from_column)
    stamp = created_at or datetime.now(timezone.utc)
    drops = []
    for day in sorted(set(frame["__from"].to_list())):
        valid = pl.col("__from") <= day
        if valid_to_column:
            valid &= pl.col("__to").is_null() | (pl.col("__to") >= day)
        snapshot = frame.filter(valid).sort(ROW_COLUMN)
        drops.append(_write(landing, contract, snapshot, _local_midnight_utc(day, local_timezone, window_minutes),
                            window_minutes, operator=str(contract.operator), feed=contract.feed, key_id=None,
                            delivery=delivery, created_at=stamp))
    return drops
