"""Day types: weekdays, Saturdays, Sundays and public holidays never compare with each other.

Shared by density baselines and by the per-drop volume checks of ingestion: a Saturday's usual
volume is another Saturday's, not a Tuesday's. Holidays are python-holidays' public holidays of
the configured country plus configured extra dates (cuti bersama); days are local dates of the
configured zone (density.local_timezone, density.holidays_country: never a code default).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

DAY_TYPES = ("weekday", "saturday", "sunday", "holiday")


@lru_cache(maxsize=64)
def _public_holidays(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, years=[year]))


def holiday_dates(country: str, first: date, last: date, extra: Iterable[date] = ()) -> list[date]:
    """Holidays between two dates (inclusive): the public holidays of ``country`` from
    python-holidays, plus ``extra`` dates (density.extra_holidays, e.g. cuti bersama)."""
    public = set().union(*(_public_holidays(country, year) for year in range(first.year, last.year + 1)))
    return sorted({day for day in (*public, *extra) if first <= day <= last})


def day_type(local_date: date, country: str, extra: Iterable[date] = ()) -> str:
    if local_date in _public_holidays(country, local_date.year) or local_date in set(extra):
        return "holiday"
    return {5: "saturday", 6: "sunday"}.get(local_date.weekday(), "weekday")


def local_slot(moment: datetime, timezone_name: str) -> tuple[date, int]:
    """The local date and minutes since local midnight of an instant."""
    local = moment.astimezone(ZoneInfo(timezone_name))
    return local.date(), local.hour * 60 + local.minute


def local_day_bounds(local_date: date, timezone_name: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a local date: local midnight to the next local midnight (23 or 25
    hours on a daylight-saving change)."""
    zone = ZoneInfo(timezone_name)
    start = datetime.combine(local_date, time(), zone)
    end = datetime.combine(local_date + timedelta(days=1), time(), zone)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def local_days(start: datetime, end: datetime, timezone_name: str) -> list[date]:
    """The local dates (``timezone_name``) whose midnight falls in [start, end): the days of a
    local-day partition range (``common.partitions.local_daily_partitions``)."""
    zone = ZoneInfo(timezone_name)
    day, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    days = []
    while day < last:
        days.append(day)
        day += timedelta(days=1)
    return days
