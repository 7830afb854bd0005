"""Partitions shared by every domain.

One partition per 15-minute window (UTC) across the emergency period, and one per day for
daily roll-ups and baselines. Bounded by the emergency period so an asset keeps far fewer
than Dagster's ~100k live partitions (docs/design.md section 9). Assets take whole ranges in one
run (single-run backfill policy), so a backfill of a day is one run, not 96.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import warnings

import dagster as dg

from crowd_platform.common.settings import get_settings

# Single-run backfills and partitioned checks are marked beta/preview; we rely on them on
# purpose (docs/decisions/002), so the warnings only add noise to every log.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

WINDOW_KEY_FORMAT = "%Y-%m-%d-%H:%M"
DAY_KEY_FORMAT = "%Y-%m-%d"

_settings = get_settings()

window_partitions = dg.TimeWindowPartitionsDefinition(
    cron_schedule=f"*/{_settings.window_minutes} * * * *",
    start=_settings.emergency_start.replace(tzinfo=None),
    end=_settings.emergency_end.replace(tzinfo=None),
    fmt=WINDOW_KEY_FORMAT,
    timezone="UTC",
)

# end_offset=1: the current day is a partition. Its baseline is computed at 00:05 from the weeks
# before it (daily_baseline_schedule) and live windows need it the same day; without the offset
# the day only exists once it is over, and Dagster refuses the request.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=_settings.emergency_start.replace(tzinfo=None),
    end_date=_settings.emergency_end.replace(tzinfo=None),
    timezone="UTC",
    end_offset=1,
)

single_run = dg.BackfillPolicy.single_run()


def window_key(window_start: datetime) -> str:
    return window_start.astimezone(timezone.utc).strftime(WINDOW_KEY_FORMAT)


def day_key(day_start: datetime) -> str:
    return day_start.astimezone(timezone.utc).strftime(DAY_KEY_FORMAT)


def parse_window_key(key: str) -> datetime:
    return datetime.strptime(key, WINDOW_KEY_FORMAT).replace(tzinfo=timezone.utc)


def window_bounds(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    """[start, end) of the partition or partition range this step materializes (UTC)."""
    time_window = context.partition_time_window
    return time_window.start.astimezone(timezone.utc), time_window.end.astimezone(timezone.utc)


def windows_between(start: datetime, end: datetime, minutes: int | None = None) -> list[datetime]:
    step = timedelta(minutes=minutes or _settings.window_minutes)
    windows, current = [], start
    while current < end:
        windows.append(current)
        current += step
    return windows


def range_tags(first_key: str, last_key: str) -> dict[str, str]:
    """Tags that make one run materialize a contiguous range of partitions."""
    return {
        "dagster/asset_partition_range_start": first_key,
        "dagster/asset_partition_range_end": last_key,
    }


def _warehouse_asset(partitions_def: dg.PartitionsDefinition, outside_pool: bool = False, **asset_kwargs):
    from crowd_platform.common.warehouse import WAREHOUSE_POOL

    pool = None if outside_pool else WAREHOUSE_POOL
    return dg.asset(partitions_def=partitions_def, backfill_policy=single_run, pool=pool, **asset_kwargs)


def window_asset(outside_pool: bool = False, **asset_kwargs):
    """``@dg.asset`` for a table computed per 15-minute window: window partitions, one run for a
    range of windows (a backfill is one run, not one per window), and the warehouse pool.
    ``outside_pool``: the step computes away from the warehouse and opens it only for short reads
    and writes (CrowdPlatform.warehouse_when_free), so runs of other windows proceed meanwhile.
    Group, owners and code version come from the domain policy in definitions.py."""
    return _warehouse_asset(window_partitions, outside_pool=outside_pool, **asset_kwargs)


def day_asset(**asset_kwargs):
    """``@dg.asset`` for a table computed per UTC day, otherwise as :func:`window_asset`."""
    return _warehouse_asset(daily_partitions, **asset_kwargs)


def _local_day_partitions() -> dg.DailyPartitionsDefinition:
    """One partition per LOCAL date (density.local_timezone) of the emergency period: key D is the
    local date D, its time window local midnight to the next (17:00 UTC D-1 .. 17:00 UTC D in WIB).
    The first and last local dates that hold any instant of the period are included."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(_settings.config.density.local_timezone)
    first = _settings.emergency_start.astimezone(zone).date()
    last = (_settings.emergency_end - timedelta(microseconds=1)).astimezone(zone).date()
    return dg.DailyPartitionsDefinition(
        start_date=first.strftime(DAY_KEY_FORMAT),
        end_date=(last + timedelta(days=1)).strftime(DAY_KEY_FORMAT),
        timezone=_settings.config.density.local_timezone,
    )


# Local days (indicators): unlike daily_partitions, whose key D stands for a UTC day (or, in
# district_presence_daily, is read as the local date D), these windows ARE the local days, so a
# TimeWindowPartitionMapping from window_partitions selects exactly a local day's 15-minute windows.
local_daily_partitions = _local_day_partitions()


def local_day_asset(**asset_kwargs):
    """``@dg.asset`` for a table computed per LOCAL day (:data:`local_daily_partitions`),
    otherwise as :func:`window_asset`. ``window_bounds`` gives the local day's [start, end) in UTC."""
    return _warehouse_asset(local_daily_partitions, **asset_kwargs)
