"""Density assets: unique subscribers per cell and site, people per district, daily presence, baselines.

All numbers are computed in DuckDB from the accepted event drops of a window range
(``drops.lake_path``, never a glob over the lake). Each asset replaces its range in one
transaction (DELETE + INSERT + audit record), so reruns never double count.
``bts_presence`` and ``district_density`` are internal; ``district_density_published`` is the
k-anonymised view written by the same step (crowd_platform.publication.kanon).
"""

from datetime import datetime
from typing import Any

import dagster as dg

from crowd_platform.common.partitions import day_asset, local_day_asset, window_asset, window_bounds
from crowd_platform.common.provenance import code_version
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.asset_metadata import table_metadata
from crowd_platform.density.baseline import BASELINE_LOOKBACK_DAYS, compute_density_baseline
from crowd_platform.density.districts import compute_district_density
from crowd_platform.density.presence import compute_bts_presence, compute_district_presence_daily
from crowd_platform.geography import maps



def _metadata(result: dict[str, Any], start: datetime, end: datetime) -> dict[str, Any]:
    # Only counts of rows, windows and drops: no subscriber-level value ever reaches the event log.
    return {**result, "range_start": start.isoformat(), "range_end": end.isoformat()}


@window_asset(
    outside_pool=True,
    deps=["staged_events", "bts_registry"],
    kinds={"duckdb", "sql"},
    description="Unique subscribers per cell and per site, per operator and 15-minute window (internal, "
                "never published). Location rule from density.location_rule: any | last | modal.",
)
def bts_presence(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    start, end = window_bounds(context)
    settings = crowd.settings
    # The warehouse is held while inputs are read and rows written, not while they are counted.
    result = compute_bts_presence(crowd.warehouse_when_free, settings, start, end, context.run_id)
    with crowd.warehouse_when_free() as con:
        table = table_metadata(con, "bts_presence", window=(start, end), lineage={
            "place_id": [("staged_events", "cell_id"), ("bts_registry", "site_id")],
            "subscribers": [("staged_events", "subscriber_key"), ("staged_events", "event_time")],
        })
    context.log.info(f"bts_presence {start:%Y-%m-%d %H:%M}..{end:%H:%M}: {result['drops']} drops, rule {result['location_rule']}")
    return dg.MaterializeResult(metadata={**_metadata(result, start, end), **table, "code_version": code_version()})


@window_asset(
    deps=["bts_presence", "bts_district_weights", "districts"],
    kinds={"duckdb", "sql"},
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
        density_map = _density_map_metadata(context, crowd, con, start, end)
    context.log.info(f"district_density {start:%Y-%m-%d %H:%M}..{end:%H:%M}: {result['rows']} rows")
    return dg.MaterializeResult(metadata={**_metadata(result, start, end), **table, **density_map,
                                          "code_version": code_version()})


def _density_map_metadata(context: dg.AssetExecutionContext, crowd: CrowdPlatform, con: Any,
                          start: datetime, end: datetime) -> dict[str, Any]:
    """One choropleth per step (the last published window of the range, finest level, alerts live in
    it outlined), drawn from district_density_published only. A map that cannot be drawn is a
    warning, never a failed density step."""
    try:
        markdown, summary = maps.range_map_markdown(con, crowd.settings, start, end, alt="published density map")
    except Exception as error:  # noqa: BLE001 - the numbers are written; the picture is optional
        context.log.warning(f"density map not drawn: {type(error).__name__}: {error}")
        return {"density_map": dg.MetadataValue.md(f"_density map not drawn: {type(error).__name__}_")}
    return {"density_map": dg.MetadataValue.md(markdown), "density_map_summary": dg.MetadataValue.json(summary)}


# Partitioned by LOCAL day, like the indicators (decision 016): a UTC day read as a local date
# cut a day short wherever local midnight falls after UTC's (zones west of UTC). No partition
# dependency on the 15-minute UTC windows (Dagster refuses a mapping across time zones): the
# day's drops are found through `drops`, and its audit record names them.
@local_day_asset(
    deps=["bts_registry", "bts_district_weights", "districts"],
    kinds={"duckdb", "sql"},
    description="Unique subscribers per district per local day (density.local_timezone) at every level, each subscriber counted at most "
                "once per district (any-style presence over the day, apportioned by site weights). Internal. "
                "Computed once the local day is over, with the mobility indicators (indicators_job).",
)
def district_presence_daily(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    start, end = window_bounds(context)
    with crowd.warehouse() as con:
        result = compute_district_presence_daily(con, crowd.settings, start, end, context.run_id)
    return dg.MaterializeResult(metadata={**_metadata(result, start, end), "code_version": code_version()})


# The baseline of day D reads the 28 days before D (offsets are in days, the downstream
# partitions' unit: verified in crowd_platform_tests/density/test_density_baseline.py).
BASELINE_HISTORY_MAPPING = dg.TimeWindowPartitionMapping(start_offset=-BASELINE_LOOKBACK_DAYS, end_offset=-1)


@day_asset(
    deps=[
        dg.AssetDep("district_density", partition_mapping=BASELINE_HISTORY_MAPPING),
        dg.AssetDep("bts_presence", partition_mapping=BASELINE_HISTORY_MAPPING),
    ],
    kinds={"duckdb", "sql"},
    description="Baseline used on day D (from data before D only): median and MAD per place (site and every "
                "district level) and local time of day, over the same weekday of the previous weeks "
                "(kind=weekly) or, with too little history, the previous days of the same day type "
                "(kind=bootstrap). Weekdays, Saturdays, Sundays and public holidays (python-holidays plus "
                "density.extra_holidays) never share a baseline; a slot without comparable history gets none.",
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
