"""Baselines: the usual density of each place at each time of day, from the weeks before,
by day type: weekdays, Saturdays, Sundays and holidays never share a baseline
(docs/decisions/012-baselines-by-day-type.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from crowd_platform.common import audit
from crowd_platform.common.calendar import DAY_TYPES, holiday_dates
from crowd_platform.common.settings import DensitySection, Settings
from crowd_platform.common.warehouse import read_sql, transaction
from crowd_platform.density.presence import DensityError

BASELINE_LOOKBACK_DAYS = 28  # also the Dagster partition mapping in assets.py: keep them equal


def _day_parameters(options: DensitySection, day_start: datetime, run_id: str | None) -> dict[str, Any]:
    """Named parameters of sql/density/density_baseline.sql for the UTC day starting at ``day_start``."""
    lookback_start = day_start - timedelta(days=BASELINE_LOOKBACK_DAYS)
    # Local dates touched by the history and the day itself: one day either side of the UTC
    # dates covers any fixed offset (WIB: history D-28 .. D, target slots D .. D+1).
    first_date = lookback_start.date() - timedelta(days=1)
    last_date = day_start.date() + timedelta(days=1)
    return {
        "day_start": day_start, "lookback_start": lookback_start, "lookback_days": BASELINE_LOOKBACK_DAYS,
        "first_date": first_date, "last_date": last_date,
        "holidays": holiday_dates(options.holidays_country, first_date, last_date, options.extra_holidays),
        "weeks": options.baseline_weeks, "min_obs": options.baseline_min_obs,
        "bootstrap_days": options.baseline_bootstrap_days, "local_tz": options.local_timezone, "run_id": run_id,
    }


def compute_density_baseline(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                             run_id: str | None) -> dict[str, Any]:
    """Replace density_baseline for each UTC day in [start, end), each from the 28 days before it."""
    options = settings.config.density
    if options.baseline_weeks * 7 > BASELINE_LOOKBACK_DAYS or options.baseline_bootstrap_days > BASELINE_LOOKBACK_DAYS:
        raise DensityError(f"density baseline history is limited to {BASELINE_LOOKBACK_DAYS} days")
    summary: dict[str, Any] = {"days": 0, "rows": 0, "weekly": 0, "bootstrap": 0}
    summary.update({f"rows_{day_type}": 0 for day_type in DAY_TYPES})
    day_start = start
    with transaction(con):
        while day_start < end:
            con.execute(read_sql("density/density_baseline_delete"), {"day": day_start.date()})
            con.execute(read_sql("density/density_baseline"), _day_parameters(options, day_start, run_id))
            counts = con.execute("SELECT kind, day_type, count(*) FROM density_baseline WHERE day = $day "
                                 "GROUP BY kind, day_type", {"day": day_start.date()}).fetchall()
            for kind, day_type, count in counts:
                summary[kind] += count
                summary[f"rows_{day_type}"] += count
            summary["days"] += 1
            day_start += timedelta(days=1)
        summary["rows"] = summary["weekly"] + summary["bootstrap"]
        audit.append(con, "density_baseline.materialize", purpose=settings.purpose, object_kind="day_range",
                     object_id=f"{start.date()}/{end.date()}", run_id=run_id, details=summary)
    return summary
