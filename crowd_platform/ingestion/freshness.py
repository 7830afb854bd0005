"""Freshness of the operators' event feeds: what each delivered last, and who is late.

Each operator's events contract promises one drop per window (slaProperties ``frequency``, the
platform's 15-minute window) landing at most ``latency`` (30 min) after the window ends. A window's
drop is *overdue* once that deadline has passed; an operator is *late* when a window after its
last delivered one is overdue, i.e. it went silent. Everything is computed as of a given moment
(``now``, UTC) from the ``drops`` table (windows ended by then, with their current status) and
``window_completeness`` (written by the density step, docs/detection.md section 2a).

Used by the ``drops_fresh`` asset check (``checks.py``, as of the newest window any operator
delivered, so a backfill of an old week is judged in its own time) and by
``crowd-platform status`` (as of now, or ``--as-of``). Counts, windows and operator names only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from crowd_platform.common.contracts import Contract, event_contracts
from crowd_platform.common.settings import Settings
from crowd_platform.common.timeutil import iso_z, parse_utc
from crowd_platform.common.warehouse import fetch_dicts, read_sql

# Completeness of this many newest windows is shown with the operators.
RECENT_WINDOWS = 8
# A late operator is an ERROR (not a WARN) once more than this many of its windows are overdue.
ERROR_AFTER_OVERDUE_WINDOWS = 4


@dataclass(frozen=True)
class OperatorFreshness:
    operator: str
    latency_minutes: float
    last_window_start: datetime | None   # newest delivered window (None: nothing delivered yet)
    last_received_at: datetime | None    # when that drop was received
    lag: timedelta | None                # as_of - end of the newest delivered window
    overdue_windows: int                 # windows after the newest delivered one whose deadline passed
    missing_today: tuple[datetime, ...]  # due windows of the local day without a delivered drop
    quarantined_today: int               # drops of the local day's windows in quarantine or rejected
    feed: str = "events"                 # one row per event feed of the operator (e.g. calls, sms)

    @property
    def name(self) -> str:
        """The operator, or operator/feed for a feed other than ``events`` (e.g. telkomsel/sms)."""
        return self.operator if self.feed == "events" else f"{self.operator}/{self.feed}"

    @property
    def late(self) -> bool:
        return self.overdue_windows > 0

    @property
    def severe(self) -> bool:
        return self.overdue_windows > ERROR_AFTER_OVERDUE_WINDOWS

    @property
    def state(self) -> str:
        if not self.late:
            return "fresh"
        return f"LATE ({self.overdue_windows} window{'s' if self.overdue_windows != 1 else ''} overdue)"


@dataclass(frozen=True)
class WindowCompleteness:
    window_start: datetime
    expected: tuple[str, ...]
    arrived: tuple[str, ...]
    missing: tuple[str, ...]             # not arrived, or arrived but volume-flagged
    flagged: tuple[str, ...]             # arrived well below their usual volume (counted as missing)
    completeness: float
    complete: bool
    latency_deadline: datetime | None
    missing_feeds: tuple[str, ...] = ()  # operator/feed of every expected event feed not arrived


@dataclass(frozen=True)
class FreshnessReport:
    as_of: datetime
    window_minutes: int
    timezone: str
    day_start: datetime                  # local midnight of as_of's local day, in UTC
    operators: tuple[OperatorFreshness, ...]
    windows: tuple[WindowCompleteness, ...]  # newest first

    @property
    def late_operators(self) -> list[str]:
        return [operator.name for operator in self.operators if operator.late]

    @property
    def fresh(self) -> bool:
        return not self.late_operators

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: UTC times as ISO text, lags in minutes."""
        return {
            "as_of": iso_z(self.as_of),
            "local_day": self.day_start.astimezone(ZoneInfo(self.timezone)).date().isoformat(),
            "timezone": self.timezone,
            "window_minutes": self.window_minutes,
            "fresh": self.fresh,
            "late_operators": self.late_operators,
            "operators": [_operator_dict(operator) for operator in self.operators],
            "recent_windows": [_window_dict(window) for window in self.windows],
        }


def _operator_dict(operator: OperatorFreshness) -> dict[str, Any]:
    return {
        "operator": operator.operator,
        "feed": operator.feed,
        "latency_minutes": operator.latency_minutes,
        "last_window_start": _iso(operator.last_window_start),
        "last_received_at": _iso(operator.last_received_at),
        "lag_minutes": operator.lag / timedelta(minutes=1) if operator.lag is not None else None,
        "overdue_windows": operator.overdue_windows,
        "late": operator.late,
        "missing_windows_today": len(operator.missing_today),
        "missing_today": [iso_z(window) for window in operator.missing_today],
        "quarantined_today": operator.quarantined_today,
    }


def _window_dict(window: WindowCompleteness) -> dict[str, Any]:
    return {
        "window_start": iso_z(window.window_start),
        "expected_operators": list(window.expected),
        "arrived_operators": list(window.arrived),
        "missing_operators": list(window.missing),
        "flagged_operators": list(window.flagged),
        "missing_feeds": list(window.missing_feeds),
        "completeness": window.completeness,
        "complete": window.complete,
        "latency_deadline": _iso(window.latency_deadline),
    }


def _iso(moment: datetime | None) -> str | None:
    return iso_z(moment) if moment is not None else None


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(timezone.utc) if moment is not None else None


def window_floor(moment: datetime, minutes: int) -> datetime:
    """Start of the window (UTC grid of ``minutes``) holding ``moment``."""
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % (minutes * 60), timezone.utc)


def local_day_start(moment: datetime, zone: str) -> datetime:
    """Local midnight (``zone``) of the day holding ``moment``, in UTC."""
    local = ZoneInfo(zone)
    return datetime.combine(moment.astimezone(local).date(), time(), tzinfo=local).astimezone(timezone.utc)


def overdue_windows(first_expected: datetime, now: datetime, step: timedelta, latency: timedelta) -> int:
    """How many windows from ``first_expected`` on (one every ``step``) are overdue at ``now``:
    their end + ``latency`` lies strictly before ``now`` (a drop may land up to the deadline)."""
    deadline = first_expected + step + latency
    if now <= deadline:
        return 0
    return math.ceil((now - deadline) / step)


def _first_expected_window(contract: Contract, settings: Settings) -> datetime:
    """The first window the operator owes: the emergency start, or its ``active_from`` if later."""
    start = settings.emergency_start
    if contract.custom.get("active_from") is not None:
        start = max(start, parse_utc(contract.custom["active_from"], what=f"{contract.contract_id} active_from"))
    floor = window_floor(start, settings.window_minutes)
    return floor if floor == start else floor + timedelta(minutes=settings.window_minutes)


def expected_contracts(settings: Settings, now: datetime) -> dict[tuple[str, str], Contract]:
    """(operator, feed) -> contract of every event feed active for the last window ended by ``now``."""
    last_ended = window_floor(now, settings.window_minutes) - timedelta(minutes=settings.window_minutes)
    return {(operator, feed): contract for operator, feeds in sorted(event_contracts(settings.contracts_dir).items())
            for feed, contract in feeds.items() if contract.active_at(last_ended)}


def last_delivered(con: duckdb.DuckDBPyConnection, until: datetime | None, include_staged: bool) -> dict[tuple[str, str], dict]:
    """(operator, feed) -> {last_window_start, last_received_at} of its newest delivered drop of an
    event feed among the windows ended by ``until`` (every window when None)."""
    rows = fetch_dicts(con, read_sql("ingestion/freshness_last_drops"), {"until": until, "include_staged": include_staged})
    return {(row["operator"], row["feed"]): {"last_window_start": _utc(row["last_window_start"]),
                              "last_received_at": _utc(row["last_received_at"])} for row in rows}


def newest_delivered_window_end(con: duckdb.DuckDBPyConnection, settings: Settings, include_staged: bool = True) -> datetime | None:
    """End of the newest window any operator delivered an events drop for (None: no drop yet)."""
    starts = [row["last_window_start"] for row in last_delivered(con, None, include_staged).values()]
    return max(starts) + timedelta(minutes=settings.window_minutes) if starts else None


def _delivered_today(con: duckdb.DuckDBPyConnection, day_start: datetime, now: datetime,
                     include_staged: bool) -> dict[tuple[str, str], set[datetime]]:
    rows = con.execute(read_sql("ingestion/freshness_delivered_windows"),
                       {"start": day_start, "end": now, "include_staged": include_staged}).fetchall()
    delivered: dict[tuple[str, str], set[datetime]] = {}
    for operator, feed, window_start in rows:
        delivered.setdefault((operator, feed), set()).add(_utc(window_start))
    return delivered


def _quarantined_today(con: duckdb.DuckDBPyConnection, day_start: datetime, now: datetime,
                       expected: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """(operator, feed) -> quarantined drops; those of a feed not expected (e.g. one without a
    contract) count on the operator's first expected feed."""
    rows = con.execute(read_sql("ingestion/freshness_quarantined"), {"start": day_start, "end": now}).fetchall()
    first_feed = {}
    for operator, feed in sorted(expected, key=lambda key: (key[0], key[1] != "events", key[1])):
        first_feed.setdefault(operator, feed)
    counts: dict[tuple[str, str], int] = {}
    for operator, feed, count in rows:
        key = (operator, feed) if (operator, feed) in expected else (operator, first_feed.get(operator, feed))
        counts[key] = counts.get(key, 0) + int(count)
    return counts


def recent_windows(con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime,
                   limit: int = RECENT_WINDOWS) -> tuple[WindowCompleteness, ...]:
    """Completeness of the ``limit`` newest windows ended by ``now`` (window_completeness), newest first."""
    last_start = window_floor(now, settings.window_minutes) - timedelta(minutes=settings.window_minutes)
    rows = fetch_dicts(con, read_sql("ingestion/freshness_recent_windows"), {"last_start": last_start, "limit": limit})
    return tuple(WindowCompleteness(
        window_start=_utc(row["window_start"]), expected=tuple(row["expected_operators"]),
        arrived=tuple(row["arrived_operators"]), missing=tuple(row["missing_operators"]),
        flagged=tuple(row["flagged_operators"]),
        completeness=float(row["completeness"]), complete=bool(row["complete"]),
        latency_deadline=_utc(row["latency_deadline"]), missing_feeds=tuple(row["missing_feeds"])) for row in rows)


def _missing_windows(contract: Contract, first: datetime, now: datetime, step: timedelta,
                     latency: timedelta, delivered: set[datetime]) -> tuple[datetime, ...]:
    """Due windows (deadline passed) from ``first`` on with no delivered drop, while the contract is active."""
    missing, window = [], first
    while window + step + latency < now:
        if window not in delivered and contract.active_at(window):
            missing.append(window)
        window += step
    return tuple(missing)


def _operator_freshness(contract: Contract, settings: Settings, now: datetime, day_start: datetime,
                        last: dict | None, delivered: set[datetime], quarantined: int) -> OperatorFreshness:
    step = timedelta(minutes=settings.window_minutes)
    latency = timedelta(minutes=contract.latency_minutes or 0.0)
    first_expected = _first_expected_window(contract, settings)
    last_window = last["last_window_start"] if last else None
    next_owed = max(first_expected, last_window + step) if last_window is not None else first_expected
    return OperatorFreshness(
        operator=contract.operator or "",
        feed=contract.feed,
        latency_minutes=latency / timedelta(minutes=1),
        last_window_start=last_window,
        last_received_at=last["last_received_at"] if last else None,
        lag=now - (last_window + step) if last_window is not None else None,
        overdue_windows=overdue_windows(next_owed, now, step, latency),
        missing_today=_missing_windows(contract, max(day_start, first_expected), now, step, latency, delivered),
        quarantined_today=quarantined,
    )


def freshness_report(con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime, *,
                     include_staged: bool = False, last_windows: int = RECENT_WINDOWS) -> FreshnessReport:
    """Freshness of every operator with an active events contract, as of ``now`` (UTC).

    ``include_staged`` also counts drops validated in staging and waiting for publish as delivered
    (the asset check runs before ``staged_events`` may have published them)."""
    now = parse_utc(now, what="as of")
    zone = settings.config.density.local_timezone
    day_start = local_day_start(now, zone)
    last = last_delivered(con, now, include_staged)
    delivered = _delivered_today(con, day_start, now, include_staged)
    expected = expected_contracts(settings, now)
    quarantined = _quarantined_today(con, day_start, now, set(expected))
    operators = tuple(
        _operator_freshness(contract, settings, now, day_start, last.get(key), delivered.get(key, set()),
                            quarantined.get(key, 0))
        for key, contract in expected.items())
    return FreshnessReport(as_of=now, window_minutes=settings.window_minutes, timezone=zone, day_start=day_start,
                           operators=operators, windows=recent_windows(con, settings, now, last_windows))


def freshness_as_of_newest_drop(con: duckdb.DuckDBPyConnection, settings: Settings) -> FreshnessReport | None:
    """The report as of the end of the newest window any operator delivered (staged drops count),
    so that data processed long after its time (a backfill of a simulated week) is judged in its
    own time. None when no events drop was delivered yet."""
    reference = newest_delivered_window_end(con, settings, include_staged=True)
    if reference is None:
        return None
    return freshness_report(con, settings, reference, include_staged=True)


def format_lag(lag: timedelta | None) -> str:
    if lag is None:
        return "-"
    minutes = int(lag / timedelta(minutes=1))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def _short(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def format_report(report: FreshnessReport) -> str:
    """The text ``crowd-platform status`` prints: one line per operator, then the recent windows."""
    local_day = report.day_start.astimezone(ZoneInfo(report.timezone)).date()
    lines = [f"status as of {iso_z(report.as_of)} (local day {local_day}, {report.timezone}; times UTC)",
             f"{'operator':<12} {'last window':<17} {'received':<20} {'lag':>10} {'missing today':>14} "
             f"{'quarantined today':>18}  state"]
    for operator in report.operators:
        received = iso_z(operator.last_received_at) if operator.last_received_at else "-"
        lines.append(f"{operator.name:<12} {_short(operator.last_window_start):<17} {received:<20} "
                     f"{format_lag(operator.lag):>10} {len(operator.missing_today):>14} "
                     f"{operator.quarantined_today:>18}  {operator.state}")
    for operator in report.operators:
        if operator.missing_today:
            shown = ", ".join(window.strftime("%H:%M") for window in operator.missing_today[:12])
            more = f" and {len(operator.missing_today) - 12} more" if len(operator.missing_today) > 12 else ""
            lines.append(f"  {operator.name} missing today: {shown}{more}")
    lines.append(f"last {len(report.windows)} window(s), newest first:" if report.windows
                 else "no window completeness recorded yet (density step not run)")
    for window in report.windows:
        missing = f"  missing {', '.join(window.missing)}" if window.missing else ""
        partial = [feed for feed in window.missing_feeds if not feed.endswith("/events")]
        if partial:
            missing += f" (feeds: {', '.join(partial)})"
        if window.flagged:
            missing += f" (volume-flagged: {', '.join(window.flagged)})"
        lines.append(f"  {_short(window.window_start)}  {len(window.arrived)}/{len(window.expected)} operators  "
                     f"{window.completeness:>4.0%} of the market{missing}")
    lines.append("all operators fresh" if report.fresh else f"late: {', '.join(report.late_operators)}")
    return "\n".join(lines)
