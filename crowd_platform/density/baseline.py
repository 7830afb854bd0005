"""Baselines: the usual density of each place at each time of day, from the weeks before.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import holidays

from crowd_platform.common import audit
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import read_sql, transaction
from crowd_platform.density.presence import DensityError

BASELINE_LOOKBACK_DAYS = 28  # also the Dagster partition mapping in assets.py: keep them equal


def holiday_dates(country: str, first: date, last: date) -> list[date]:
    """Public holidays of ``country`` between two dates (inclusive), from python-holidays."""
    calendar = holidays.country_holidays(country, years=range(first.year, last.year + 1))
    return sorted(day for day in calendar if first <= day <= last)


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
            con.execute(read_sql("density/density_baseline_delete"), {"day": day_start.date()})
            con.execute(read_sql("density/density_baseline"), {
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
