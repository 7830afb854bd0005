"""Presence: unique subscribers per cell and site per window, and per district per day.

Computed in DuckDB from the accepted event drops of a range (``drops.lake_path``, never a
glob over the lake); each step replaces its range in one transaction with its audit record,
so reruns never double count. ``bts_presence`` is internal, never published.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from crowd_platform.common import audit
from crowd_platform.common import storage
from crowd_platform.common.calendar import local_day_bounds, local_days
from crowd_platform.common.contracts import operator_event_contracts
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import fetch_dicts, private_engine, read_sql, transaction

LOCATION_RULES = ("any", "last", "modal")
# Up to this many input files, presence_events reads each file in its own branch with its window
# and operator as constants (bts_presence_events.sql: fastest for a window's few large drops);
# above it, one read of the list joined on file_index (bts_presence_events_list.sql: per-branch
# overhead dominates for a day's hundreds of drops). Measured in docs/performance.md, density.
PER_FILE_SCAN_MAX_FILES = 32
# The columns the location-rule models (sql/density/bts_presence_<rule>.sql) select, in order.
PRESENCE_COLUMNS = "window_start, operator, place_level, place_id, subscribers, location_rule, run_id"


class DensityError(RuntimeError):
    """A one-line reason a density step cannot run (bad config, missing market share)."""


def market_shares(settings: Settings) -> dict[str, float]:
    """Operator -> market share, from the operators' data contracts (the single source)."""
    shares = {}
    for operator, contract in operator_event_contracts(settings.contracts_dir).items():
        share = contract.market_share
        if share is not None:
            if not 0 < share <= 1:
                raise DensityError(f"{contract.contract_id}: market_share must be in (0, 1], not {share}")
            shares[operator] = share
    return shares


def load_presence_inputs(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Register the accepted event drops of [start, end) and the ``presence_events`` view.

    Returns the drops (drop_id, operator, window_start, lake_path, contract_version).
    ``presence_events`` reads each file on its own with its window and operator as constants
    (sql/density/bts_presence_events.sql), or, above PER_FILE_SCAN_MAX_FILES files, the list
    joined on file_index (bts_presence_events_list.sql); ``presence_parts`` numbers the
    (window, operator) pairs the presence queries group on.
    """
    return register_presence_inputs(con, settings, fetch_presence_inputs(con, start, end))


def fetch_presence_inputs(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The accepted event drops of [start, end), as stored (lake paths relative to the root)."""
    return fetch_dicts(con, read_sql("density/bts_presence_inputs"), {"start": start, "end": end})


def register_presence_inputs(con: duckdb.DuckDBPyConnection, settings: Settings,
                             inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """load_presence_inputs for inputs fetched already (possibly from another connection)."""
    inputs = [dict(row) for row in inputs]
    for row in inputs:
        # Local path, or the object through the fsspec filesystem registered on this connection.
        row["lake_path"] = storage.duckdb_path(con, settings.resolve(row["lake_path"]))
    frame = pl.DataFrame(
        inputs,
        schema={"drop_id": pl.String, "operator": pl.String, "window_start": pl.Datetime("us", "UTC"),
                "lake_path": pl.String, "contract_version": pl.String},
    )
    con.register("presence_inputs_frame", frame)
    con.execute("CREATE OR REPLACE TEMP TABLE presence_inputs AS SELECT * FROM presence_inputs_frame")
    con.unregister("presence_inputs_frame")
    parts: dict[tuple[datetime, str], int] = {}
    for row in inputs:
        parts.setdefault((row["window_start"], row["operator"]), len(parts) + 1)
    parts_frame = pl.DataFrame(
        {"part": list(parts.values()), "window_start": [key[0] for key in parts], "operator": [key[1] for key in parts]},
        schema={"part": pl.Int32, "window_start": pl.Datetime("us", "UTC"), "operator": pl.String},
    )
    con.register("presence_parts_frame", parts_frame)
    con.execute("CREATE OR REPLACE TEMP TABLE presence_parts AS SELECT * FROM presence_parts_frame")
    con.unregister("presence_parts_frame")
    if inputs:
        con.execute("SET VARIABLE presence_files = $files", {"files": [row["lake_path"] for row in inputs]})
        con.execute("SET VARIABLE presence_windows = $windows", {"windows": [row["window_start"] for row in inputs]})
        con.execute("SET VARIABLE presence_operators = $operators", {"operators": [row["operator"] for row in inputs]})
        con.execute("SET VARIABLE presence_parts = $parts",
                    {"parts": [parts[(row["window_start"], row["operator"])] for row in inputs]})
        con.execute(read_sql("density/bts_presence_cells"))
        if len(inputs) <= PER_FILE_SCAN_MAX_FILES:
            con.execute(read_sql("density/bts_presence_events"))
            # One branch per file (the macro's argument is the file's position, an integer: no
            # value is spliced into the SQL).
            branches = " UNION ALL ".join(f"SELECT * FROM presence_file_events({number})" for number in range(1, len(inputs) + 1))
            con.execute(f"CREATE OR REPLACE TEMP VIEW presence_events AS {branches}")
        else:
            file_list = pl.DataFrame(
                {"file_index": list(range(len(inputs))), "window_start": [row["window_start"] for row in inputs],
                 "operator": [row["operator"] for row in inputs],
                 "part": [parts[(row["window_start"], row["operator"])] for row in inputs]},
                schema={"file_index": pl.UInt64, "window_start": pl.Datetime("us", "UTC"), "operator": pl.String,
                        "part": pl.Int32},
            )
            con.register("presence_file_list_frame", file_list)
            con.execute("CREATE OR REPLACE TEMP TABLE presence_file_list AS SELECT * FROM presence_file_list_frame")
            con.unregister("presence_file_list_frame")
            con.execute(read_sql("density/bts_presence_events_list"))
    return inputs


def register_geography(con: duckdb.DuckDBPyConnection, settings: Settings, operators: list[str]) -> None:
    """Temp tables operator_shares, district_ancestry and effective_district_weights."""
    shares = market_shares(settings)
    missing = sorted(set(operators) - set(shares))
    if missing:
        raise DensityError(f"no market_share in the data contract of: {', '.join(missing)}")
    frame = pl.DataFrame(
        {"operator": list(shares), "market_share": list(shares.values())},
        schema={"operator": pl.String, "market_share": pl.Float64},
    )
    con.register("operator_shares_frame", frame)
    con.execute("CREATE OR REPLACE TEMP TABLE operator_shares AS SELECT * FROM operator_shares_frame")
    con.unregister("operator_shares_frame")
    con.execute(read_sql("density/district_density_ancestry"))
    con.execute(read_sql("density/district_density_weights"))


def compute_bts_presence(open_warehouse: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]] | duckdb.DuckDBPyConnection,
                         settings: Settings, start: datetime, end: datetime, run_id: str | None,
                         rule: str | None = None, attempts: int = 3) -> dict[str, Any]:
    """Replace bts_presence for [start, end) in one transaction; return summary counts.

    ``open_warehouse`` opens the warehouse (the asset passes its resource, so the warehouse is
    held only while inputs are read and results written); a connection is used as it is. The
    counting runs in a private in-memory DuckDB over the lake files, with a copy of the registry.
    If the range's accepted drops changed meanwhile (a later delivery published by another run),
    it is counted again, at most ``attempts`` times, then under the warehouse."""
    rule = rule or settings.config.density.location_rule
    if rule not in LOCATION_RULES:
        raise DensityError(f"unknown location rule {rule!r}")
    if isinstance(open_warehouse, duckdb.DuckDBPyConnection):
        connection = open_warehouse
        open_warehouse = lambda: nullcontext(connection)  # noqa: E731 - the caller's connection, kept open
    for attempt in range(attempts):
        with open_warehouse() as con:
            inputs = fetch_presence_inputs(con, start, end)
            registry = con.sql(read_sql("density/bts_presence_registry")).to_arrow_table()
            empty = con.sql("SELECT * FROM bts_presence LIMIT 0").to_arrow_table()
            if attempt == attempts - 1:
                # Drops keep changing under us: count with the warehouse held, as one step.
                return _write_presence(con, settings, start, end, run_id, rule, inputs,
                                       _count_presence(con, settings, inputs, rule, run_id))
        counted = _count_presence_privately(settings, inputs, registry, empty, rule, run_id)
        with open_warehouse() as con:
            if fetch_presence_inputs(con, start, end) == inputs:
                return _write_presence(con, settings, start, end, run_id, rule, inputs, counted)
    raise AssertionError("unreachable: the last attempt counts under the warehouse")


def _count_presence_privately(settings: Settings, inputs: list[dict[str, Any]], registry, empty, rule: str,
                              run_id: str | None):
    """The presence rows of ``inputs`` (Arrow), counted in an in-memory DuckDB holding the registry copy."""
    engine = private_engine(settings.staging, tables={"bts_registry": registry, "bts_presence": empty})
    try:
        return _count_presence(engine, settings, inputs, rule, run_id)
    finally:
        engine.close()


def _count_presence(con: duckdb.DuckDBPyConnection, settings: Settings, inputs: list[dict[str, Any]], rule: str,
                    run_id: str | None):
    """Run the location rule's model over ``inputs`` on ``con``; its new rows as Arrow. On the
    warehouse itself (the fallback) the rows are counted into a temp copy, never the table."""
    register_presence_inputs(con, settings, inputs)
    con.execute("CREATE OR REPLACE TEMP TABLE presence_counted AS SELECT * FROM bts_presence LIMIT 0")
    if inputs:
        # The model is a query (sql/density/bts_presence_<rule>.sql); its rows go to the temp copy.
        con.execute(f"INSERT INTO presence_counted ({PRESENCE_COLUMNS})\n{read_sql(f'density/bts_presence_{rule}')}",
                    {"run_id": run_id})
    counted = con.sql("SELECT * FROM presence_counted").to_arrow_table()
    con.execute("DROP TABLE presence_counted")
    return counted


def _write_presence(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                    run_id: str | None, rule: str, inputs: list[dict[str, Any]], counted) -> dict[str, Any]:
    with transaction(con):
        con.execute(read_sql("density/bts_presence_delete"), {"start": start, "end": end})
        con.register("presence_rows", counted)
        con.execute("INSERT INTO bts_presence BY NAME SELECT * FROM presence_rows")
        con.unregister("presence_rows")
        summary = con.execute(
            """SELECT count(*) FILTER (WHERE place_level = 'cell'), count(*) FILTER (WHERE place_level = 'site'),
                      count(DISTINCT window_start), count(DISTINCT operator)
               FROM bts_presence WHERE window_start >= $start AND window_start < $end""",
            {"start": start, "end": end},
        ).fetchone()
        result = {
            "location_rule": rule,
            "drops": len(inputs),
            "cell_rows": summary[0],
            "site_rows": summary[1],
            "windows": summary[2],
            "operators": summary[3],
        }
        audit.append(con, "bts_presence.materialize", purpose=settings.purpose, object_kind="window_range",
                     object_id=f"{start.isoformat()}/{end.isoformat()}", run_id=run_id,
                     details={**result, "drop_ids": [row["drop_id"] for row in inputs]})
    return result


def compute_district_presence_daily(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                                    run_id: str | None) -> dict[str, Any]:
    """Replace district_presence_daily for the local days whose midnight falls in [start, end) (the
    UTC bounds of a local_daily_partitions range), one SQL pass per day. Day D is the local date D
    (density.local_timezone): windows from local midnight to the next, e.g. 17:00 UTC D-1 ..
    17:00 UTC D at UTC+7, 03:00 UTC D .. 03:00 UTC D+1 at UTC-3."""
    zone = settings.config.density.local_timezone
    days = local_days(start, end, zone)
    if not days:
        raise DensityError(f"district_presence_daily: no local midnight of {zone} in [{start.isoformat()}, {end.isoformat()})")
    with transaction(con):
        con.execute(read_sql("density/district_presence_daily_delete"), {"first_day": days[0], "last_day": days[-1]})
        total_drops = 0
        for local_date in days:
            inputs = load_presence_inputs(con, settings, *local_day_bounds(local_date, zone))
            if not inputs:
                continue
            total_drops += len(inputs)
            register_geography(con, settings, sorted({row["operator"] for row in inputs}))
            con.execute(read_sql("density/district_presence_daily"), {"day": local_date, "run_id": run_id})
        rows = con.execute(
            "SELECT count(*) FROM district_presence_daily WHERE day >= $first AND day <= $last",
            {"first": days[0], "last": days[-1]}).fetchone()[0]
        result = {"days": len(days), "drops": total_drops, "rows": rows, "local_timezone": zone}
        # Local dates, the end excluded, like the UTC day ranges of the other daily assets.
        audit.append(con, "district_presence_daily.materialize", purpose=settings.purpose, object_kind="day_range",
                     object_id=f"{days[0]}/{days[-1] + timedelta(days=1)}", run_id=run_id, details=result)
    return result
