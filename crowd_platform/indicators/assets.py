"""Indicator assets, partitioned by LOCAL day (common.partitions.local_daily_partitions).

Dagster 1.13 refuses a TimeWindowPartitionMapping between partitions definitions of different
time zones ("Timezones UTC and Asia/Jakarta don't match"; the definitions would not load), so these
assets declare no partition dependency on the UTC 15-minute window assets whose drops they read:
they depend on the (unpartitioned) geography assets, and on each other by local day
(docs/decisions/016-indicators-local-days.md). Each partition's days are computed one by one,
each day replaced in one transaction with its audit record; metadata holds counts only.
"""


from datetime import timedelta
from typing import Any

import dagster as dg

from crowd_platform.common.asset_metadata import table_metadata
from crowd_platform.common.partitions import local_day_asset, window_bounds
from crowd_platform.common.provenance import code_version
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.indicators.compute import (
    compute_district_daily_location,
    compute_district_od_flows,
    compute_district_unique_subscribers,
    compute_subscriber_daily_location,
    local_days,
)

# Flows of day D read the locations of D and of D-1.
PREVIOUS_AND_SAME_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=0)


def _run_days(context: dg.AssetExecutionContext, crowd: CrowdPlatform, step, table: str | None) -> dict[str, Any]:
    start, end = window_bounds(context)
    settings = crowd.settings
    days = local_days(start, end, settings.config.density.local_timezone)
    totals: dict[str, Any] = {"days": len(days)}
    with crowd.warehouse() as con:
        for day in days:
            for key, value in step(con, settings, day, context.run_id).items():
                if key == "days":
                    continue
                if isinstance(value, int) and not isinstance(value, bool) and key != "k":
                    totals[key] = totals.get(key, 0) + value
                elif value is None:
                    totals[key] = None  # masked on some day: masked for the range
                else:
                    totals.setdefault(key, value)
        table_meta = table_metadata(con, table, window=(days[0], days[-1] + timedelta(days=1)),
                                    time_column="day") if table and days else {}
    context.log.info(f"{context.asset_key.to_user_string()}: {len(days)} local day(s)")
    return {**totals, "range_start": start.isoformat(), "range_end": end.isoformat(), **table_meta,
            "code_version": code_version()}


@local_day_asset(
    deps=["bts_registry", "bts_district_weights", "districts"],
    kinds={"duckdb", "sql"},
    description="Per subscriber and LOCAL day, one finest district: daily location by rule last (last event of "
                "the day) and modal (most events, ties to the latest), and the morning and evening locations "
                "(indicators.flow_rule). Personal data (hashed pseudonyms), internal, kept 3 days.",
)
def subscriber_daily_location(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    # No table metadata: the row count of a per-subscriber table is a count of people.
    return dg.MaterializeResult(metadata=_run_days(context, crowd, compute_subscriber_daily_location, None))


@local_day_asset(
    deps=["bts_registry", "bts_district_weights", "districts"],
    kinds={"duckdb", "sql"},
    description="Unique subscribers per district and LOCAL day and hour, at every level (the definition of "
                "district_presence_daily). Also writes district_unique_subscribers_published (k-anonymised).",
)
def district_unique_subscribers(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_run_days(context, crowd, compute_district_unique_subscribers,
                                                   "district_unique_subscribers"))


@local_day_asset(
    deps=["subscriber_daily_location", "districts"],
    kinds={"duckdb", "sql"},
    description="Subscribers per district whose daily location (last, modal) is there, per LOCAL day, every "
                "level. Also writes district_daily_location_published (k-anonymised).",
)
def district_daily_location(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_run_days(context, crowd, compute_district_daily_location,
                                                   "district_daily_location"))


@local_day_asset(
    deps=[dg.AssetDep("subscriber_daily_location", partition_mapping=PREVIOUS_AND_SAME_DAY), "districts"],
    kinds={"duckdb", "sql"},
    description="Origin-destination flows between districts: consecutive LOCAL days (day-1 -> day) and morning "
                "-> evening of the day, every level. Also writes district_od_flows_published (flows with "
                "origin and destination totals, k-anonymised).",
)
def district_od_flows(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_run_days(context, crowd, compute_district_od_flows, "district_od_flows"))


INDICATOR_ASSETS = [subscriber_daily_location, district_unique_subscribers, district_daily_location, district_od_flows]
