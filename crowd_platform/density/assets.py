"""Density: unique subscribers per cell and site, people per district, daily presence, baselines.

All numbers are computed in DuckDB from the accepted event drops of a window range
(``drops.lake_path``, never a glob over the lake). Each asset replaces its range in one
transaction (DELETE + INSERT + audit record), so reruns never double count.
``bts_presence`` and ``district_density`` are internal; ``district_density_published`` is the
k-anonymised view written by the same step (crowd_platform.publication.kanon).
"""


from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import duckdb
import holidays
import polars as pl

from crowd_platform.common import audit
from crowd_platform.common import storage
from crowd_platform.common.contracts import operator_contracts
from crowd_platform.publication.kanon import suppress_hierarchy
from crowd_platform.common.partitions import daily_partitions, single_run, window_bounds, window_partitions
from crowd_platform.common.provenance import code_version
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import WAREHOUSE_POOL, fetch_dicts, read_sql, transaction
from crowd_platform.common.asset_metadata import table_metadata
from crowd_platform.common.crashpoints import crash_point

LOCATION_RULES = ("any", "last", "modal")
BASELINE_LOOKBACK_DAYS = 28  # also the Dagster partition mapping below: keep them equal
GROUP = "density"
OWNERS = ["team:density"]


PUBLISH_INPUT_SCHEMA = {
    "window_start": pl.Datetime("us", "UTC"), "level": pl.String, "district_code": pl.String,
    "parent_code": pl.String, "value": pl.Float64, "people_estimate": pl.Int64, "density_per_km2": pl.Float64,
}


class DensityError(RuntimeError):
    """A one-line reason a density step cannot run (bad config, missing market share)."""


# ---------------------------------------------------------------- settings helpers
def market_shares(settings: Settings) -> dict[str, float]:
    """Operator -> market share, from the operators' data contracts (the single source)."""
    shares = {}
    for operator, contract in operator_contracts(settings.contracts_dir).items():
        share = contract.market_share
        if share is not None:
            if not 0 < share <= 1:
                raise DensityError(f"{contract.contract_id}: market_share must be in (0, 1], not {share}")
            shares[operator] = share
    return shares


def holiday_dates(country: str, first: date, last: date) -> list[date]:
    """Public holidays of ``country`` between two dates (inclusive), from python-holidays."""
    calendar = holidays.country_holidays(country, years=range(first.year, last.year + 1))
    return sorted(day for day in calendar if first <= day <= last)


# ---------------------------------------------------------------- shared SQL steps
def load_presence_inputs(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Register the accepted event drops of [start, end) and the ``presence_events`` view.

    Returns the drops (drop_id, operator, window_start, lake_path, contract_version).
    """
    inputs = fetch_dicts(con, read_sql("bts_presence_inputs"), {"start": start, "end": end})
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
    if inputs:
        con.execute("SET VARIABLE presence_files = $files", {"files": [row["lake_path"] for row in inputs]})
        con.execute(read_sql("bts_presence_cells"))
        con.execute(read_sql("bts_presence_events"))
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
    con.execute(read_sql("district_density_ancestry"))
    con.execute(read_sql("district_density_weights"))


def compute_bts_presence(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                         run_id: str | None, rule: str | None = None) -> dict[str, Any]:
    """Replace bts_presence for [start, end) in one transaction; return summary counts."""
    rule = rule or settings.config.density.location_rule
    if rule not in LOCATION_RULES:
        raise DensityError(f"unknown location rule {rule!r}")
    with transaction(con):
        inputs = load_presence_inputs(con, settings, start, end)
        con.execute(read_sql("bts_presence_delete"), {"start": start, "end": end})
        if inputs:
            con.execute(read_sql(f"bts_presence_{rule}"), {"run_id": run_id})
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


def publish_density(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime) -> dict[str, int]:
    """Write district_density_published for [start, end): k-anonymised, one hierarchy per window.

    Runs inside the caller's transaction and verifies its own output before returning
    (write-audit-publish: a violation raises and the transaction rolls back).
    """
    k = settings.k_anonymity
    source = pl.DataFrame(fetch_dicts(con, read_sql("district_density_published_input"), {"start": start, "end": end}),
                          schema=PUBLISH_INPUT_SCHEMA)
    con.execute(read_sql("district_density_published_delete"), {"start": start, "end": end})
    if source.is_empty():
        return {"published": 0, "primary": 0, "complementary": 0}
    parts = [
        suppress_hierarchy(window_rows, k)
        for _, window_rows in source.group_by("window_start", maintain_order=True)
    ]
    decided = pl.concat(parts)
    published = decided.select(
        "window_start",
        "level",
        "district_code",
        pl.when(pl.col("suppression").is_null()).then(pl.col("people_estimate")).otherwise(None).alias("people_estimate"),
        pl.when(pl.col("suppression").is_null()).then(pl.col("density_per_km2")).otherwise(None).alias("density_per_km2"),
        pl.col("suppression").is_not_null().alias("suppressed"),
        "suppression",
    )
    leaked = published.filter(pl.col("people_estimate").is_not_null() & (pl.col("people_estimate") <= k)).height
    if leaked:
        raise DensityError(f"k-anonymity violated for {leaked} published rows; nothing published")
    con.register("published_frame", published)
    con.execute(
        "INSERT INTO district_density_published SELECT window_start, level, district_code, people_estimate, "
        "density_per_km2, suppressed, suppression FROM published_frame"
    )
    con.unregister("published_frame")
    counts = decided["suppression"].value_counts()
    by_kind = dict(zip(counts["suppression"].to_list(), counts["count"].to_list()))
    return {
        "published": by_kind.get(None, 0),
        "primary": by_kind.get("primary", 0),
        "complementary": by_kind.get("complementary", 0),
    }


def compute_district_density(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                             run_id: str | None) -> dict[str, Any]:
    """Replace district_density and district_density_published for [start, end)."""
    operators = [row[0] for row in con.execute(
        "SELECT DISTINCT operator FROM bts_presence WHERE window_start >= $start AND window_start < $end",
        {"start": start, "end": end}).fetchall()]
    with transaction(con):
        register_geography(con, settings, operators)
        con.execute(read_sql("district_density_delete"), {"start": start, "end": end})
        con.execute(read_sql("district_density"),
                    {"start": start, "end": end, "multi_sim_factor": settings.config.density.multi_sim_factor, "run_id": run_id})
        rows, windows, levels = con.execute(
            "SELECT count(*), count(DISTINCT window_start), count(DISTINCT level) FROM district_density "
            "WHERE window_start >= $start AND window_start < $end", {"start": start, "end": end}).fetchone()
        suppression = publish_density(con, settings, start, end)
        result = {"rows": rows, "windows": windows, "levels": levels, "operators": len(operators),
                  "k": settings.k_anonymity, **{f"published_{key}": value for key, value in suppression.items()}}
        audit.append(con, "district_density.materialize", purpose=settings.purpose, object_kind="window_range",
                     object_id=f"{start.isoformat()}/{end.isoformat()}", run_id=run_id, details=result)
        crash_point("density_writing")
    return result


def compute_district_presence_daily(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                                    run_id: str | None) -> dict[str, Any]:
    """Replace district_presence_daily for the UTC days in [start, end), one SQL pass per day."""
    days = []
    day = start
    while day < end:
        days.append(day)
        day += timedelta(days=1)
    with transaction(con):
        con.execute(read_sql("district_presence_daily_delete"),
                    {"first_day": start.date(), "last_day": (end - timedelta(days=1)).date()})
        total_drops = 0
        for day_start in days:
            inputs = load_presence_inputs(con, settings, day_start, day_start + timedelta(days=1))
            if not inputs:
                continue
            total_drops += len(inputs)
            register_geography(con, settings, sorted({row["operator"] for row in inputs}))
            con.execute(read_sql("district_presence_daily"), {"day": day_start.date(), "run_id": run_id})
        rows = con.execute(
            "SELECT count(*) FROM district_presence_daily WHERE day >= $first AND day < $last",
            {"first": start.date(), "last": end.date()}).fetchone()[0]
        result = {"days": len(days), "drops": total_drops, "rows": rows}
        audit.append(con, "district_presence_daily.materialize", purpose=settings.purpose, object_kind="day_range",
                     object_id=f"{start.date()}/{end.date()}", run_id=run_id, details=result)
    return result


def compute_density_baseline(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                             run_id: str | None) -> dict[str, Any]:
    """Replace density_baseline for each UTC day in [start, end), each from the 28 days before it."""
    options = settings.config.density
    if options.baseline_weeks * 7 > BASELINE_LOOKBACK_DAYS or options.baseline_bootstrap_days > BASELINE_LOOKBACK_DAYS:
        raise DensityError(f"density baseline history is limited to {BASELINE_LOOKBACK_DAYS} days")
    summary = {"days": 0, "rows": 0, "weekly": 0, "bootstrap": 0}
    day_start = start
    with transaction(con):
        while day_start < end:
            lookback_start = day_start - timedelta(days=BASELINE_LOOKBACK_DAYS)
            # Local dates of the history can run one day past the UTC day: include it.
            excluded = holiday_dates(options.holidays_country, lookback_start.date(), day_start.date() + timedelta(days=1))
            con.execute(read_sql("density_baseline_delete"), {"day": day_start.date()})
            con.execute(read_sql("density_baseline"), {
                "day_start": day_start, "lookback_start": lookback_start, "holidays": excluded,
                "weeks": options.baseline_weeks, "min_obs": options.baseline_min_obs,
                "bootstrap_days": options.baseline_bootstrap_days, "local_tz": options.local_timezone, "run_id": run_id,
            })
            kinds = dict(con.execute("SELECT kind, count(*) FROM density_baseline WHERE day = $day GROUP BY kind",
                                     {"day": day_start.date()}).fetchall())
            summary["days"] += 1
            summary["weekly"] += kinds.get("weekly", 0)
            summary["bootstrap"] += kinds.get("bootstrap", 0)
            day_start += timedelta(days=1)
        summary["rows"] = summary["weekly"] + summary["bootstrap"]
        audit.append(con, "density_baseline.materialize", purpose=settings.purpose, object_kind="day_range",
                     object_id=f"{start.date()}/{end.date()}", run_id=run_id, details=summary)
    return summary


# ---------------------------------------------------------------- assets
def _metadata(result: dict[str, Any], start: datetime, end: datetime) -> dict[str, Any]:
    # Only counts of rows, windows and drops: no subscriber-level value ever reaches the event log.
    return {**result, "range_start": start.isoformat(), "range_end": end.isoformat()}


@dg.asset(
    partitions_def=window_partitions,
    backfill_policy=single_run,
    deps=["staged_events", "bts_registry"],
    pool=WAREHOUSE_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "sql"},
    code_version="bts_presence-1",
    description="Unique subscribers per cell and per site, per operator and 15-minute window (internal, "
                "never published). Location rule from density.location_rule: any | last | modal.",
)
def bts_presence(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    start, end = window_bounds(context)
    settings = crowd.settings
    with crowd.warehouse() as con:
        result = compute_bts_presence(con, settings, start, end, context.run_id)
        table = table_metadata(con, "bts_presence", window=(start, end), lineage={
            "place_id": [("staged_events", "cell_id"), ("bts_registry", "site_id")],
            "subscribers": [("staged_events", "subscriber_key"), ("staged_events", "event_time")],
        })
    context.log.info(f"bts_presence {start:%Y-%m-%d %H:%M}..{end:%H:%M}: {result['drops']} drops, rule {result['location_rule']}")
    return dg.MaterializeResult(metadata={**_metadata(result, start, end), **table, "code_version": code_version()})


@dg.asset(
    partitions_def=window_partitions,
    backfill_policy=single_run,
    deps=["bts_presence", "bts_district_weights", "districts"],
    pool=WAREHOUSE_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "sql"},
    code_version="district_density-1",
    description="People per district at every level and window: site subscribers apportioned by "
                "bts_district_weights, rolled up by parent_code, scaled by market share and multi-SIM "
                "factor, per km2 of land. Also writes district_density_published (k-anonymised).",
)
def district_density(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    start, end = window_bounds(context)
    settings = crowd.settings
    with crowd.warehouse() as con:
        result = compute_district_density(con, settings, start, end, context.run_id)
        table = table_metadata(con, "district_density", window=(start, end), lineage={
            "subscribers": [("bts_presence", "subscribers"), ("bts_district_weights", "weight")],
            "people_estimate": [("bts_presence", "subscribers"), ("bts_district_weights", "weight")],
            "density_per_km2": [("bts_presence", "subscribers"), ("bts_district_weights", "weight"), ("districts", "land_area_km2")],
            "district_code": [("bts_district_weights", "district_code"), ("districts", "parent_code")],
            "drop_ids": [("staged_events", "drop_id")],
        })
    context.log.info(f"district_density {start:%Y-%m-%d %H:%M}..{end:%H:%M}: {result['rows']} rows")
    return dg.MaterializeResult(metadata={**_metadata(result, start, end), **table, "code_version": code_version()})


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    deps=["staged_events", "bts_registry", "bts_district_weights", "districts"],
    pool=WAREHOUSE_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "sql"},
    code_version="district_presence_daily-1",
    description="Unique subscribers per district per UTC day at every level, each subscriber counted at most "
                "once per district (any-style presence over the day, apportioned by site weights). Internal.",
)
def district_presence_daily(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    start, end = window_bounds(context)
    with crowd.warehouse() as con:
        result = compute_district_presence_daily(con, crowd.settings, start, end, context.run_id)
    return dg.MaterializeResult(metadata={**_metadata(result, start, end), "code_version": code_version()})


# The baseline of day D reads the 28 days before D (offsets are in days, the downstream
# partitions' unit: verified in crowd_platform_tests/test_density_baseline.py).
BASELINE_HISTORY_MAPPING = dg.TimeWindowPartitionMapping(start_offset=-BASELINE_LOOKBACK_DAYS, end_offset=-1)


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    deps=[
        dg.AssetDep("district_density", partition_mapping=BASELINE_HISTORY_MAPPING),
        dg.AssetDep("bts_presence", partition_mapping=BASELINE_HISTORY_MAPPING),
    ],
    pool=WAREHOUSE_POOL,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "sql"},
    code_version="density_baseline-1",
    description="Baseline used on day D (from data before D only): median and MAD per place (site and every "
                "district level) and local time of day, over the same weekday of the previous weeks "
                "(kind=weekly) or, with too little history, the previous days (kind=bootstrap). "
                "Indonesian public holidays are left out.",
)
def density_baseline(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    start, end = window_bounds(context)
    with crowd.warehouse() as con:
        result = compute_density_baseline(con, crowd.settings, start, end, context.run_id)
        table = table_metadata(con, "density_baseline", window=(start.date(), end.date()), time_column="day", lineage={
            "median": [("district_density", "people_estimate"), ("bts_presence", "subscribers")],
            "mad": [("district_density", "people_estimate"), ("bts_presence", "subscribers")],
        })
    context.log.info(f"density_baseline {start:%Y-%m-%d}..{end:%Y-%m-%d}: {result['rows']} rows")
    return dg.MaterializeResult(metadata={**_metadata(result, start, end), **table, "code_version": code_version()})


DENSITY_ASSETS = [bts_presence, district_density, district_presence_daily, density_baseline]
