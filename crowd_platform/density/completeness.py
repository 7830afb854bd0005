"""Window completeness: which operators were expected for a window, which arrived, and how much
of the market they cover. An operator with several event feeds (e.g. calls and sms, one contract
each) has arrived only when every feed expected then has; the others are its missing feeds.

Density is computed as drops arrive (a window with one operator gives a number), but a number
from 5 % of the market scaled up by 1 / 0.05 is no basis for an SMS blast. This module records,
for every window of a range (also windows where nothing arrived), what was expected from the
operators' contracts (active then) and what arrived; the alert engine evaluates a window only
when it is complete, or when the contracts' latency has passed and enough of the market reports.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from crowd_platform.common.contracts import Contract, event_contracts, operator_contract
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import insert_rows

# Shares are floats from YAML summed in any order: a share at the threshold must not miss it on rounding.
SHARE_EPSILON = 1e-9


def _arrived(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dict[datetime, dict[tuple[str, str], bool]]:
    """Per window, the (operator, feed) pairs with an accepted drop of an event feed -> whether that
    drop is flagged as well below its usual volume (ingestion/volume.py): a flagged drop does not
    count as arrived."""
    rows = con.execute(
        "SELECT window_start, operator, feed, bool_or(volume_flag IS NOT NULL) FROM drops "
        "WHERE coalesce(feed_kind, feed) = 'events' AND status = 'accepted' AND lake_path IS NOT NULL "
        "AND window_start >= ? AND window_start < ? GROUP BY ALL", [start, end]).fetchall()
    arrived: dict[datetime, dict[tuple[str, str], bool]] = {}
    for window_start, operator, feed, flagged in rows:
        arrived.setdefault(window_start, {})[(operator, feed)] = flagged
    return arrived


def _window_row(window: datetime, step: timedelta, feeds: dict[str, dict[str, Contract]],
                delivered: dict[tuple[str, str], bool], run_id: str | None) -> dict[str, Any]:
    """One window: an operator has arrived when every one of its event feeds expected then has
    arrived unflagged (one feed alone would be a partial count); missing feeds are operator/feed."""
    expected = {operator: {feed: contract for feed, contract in by_feed.items() if contract.active_at(window)}
                for operator, by_feed in feeds.items()}
    expected = {operator: by_feed for operator, by_feed in expected.items() if by_feed}
    flagged = sorted({operator for (operator, _feed), is_flagged in delivered.items() if is_flagged})
    missing_feeds = sorted((operator, feed) for operator, by_feed in expected.items() for feed in by_feed
                           if delivered.get((operator, feed)) is not False)
    missing = sorted({operator for operator, _feed in missing_feeds})
    arrived = sorted(set(expected) - set(missing))
    # Operators that delivered without being expected (contract not active then) still show as arrived.
    arrived += sorted({operator for (operator, _feed), is_flagged in delivered.items()
                       if not is_flagged and operator not in expected and operator not in flagged})
    shares = {operator: operator_contract(by_feed).market_share or 0.0 for operator, by_feed in expected.items()}
    expected_share = sum(shares.values())
    arrived_share = sum(shares.get(operator, 0.0) for operator in arrived)
    # A flagged drop is already here: waiting for it would not help (a redelivery re-runs the window).
    latencies = [expected[operator][feed].latency_minutes or 0.0 for operator, feed in missing_feeds
                 if not delivered.get((operator, feed))]
    return {
        "window_start": window, "expected_operators": sorted(expected), "arrived_operators": sorted(arrived),
        "missing_operators": missing, "flagged_operators": flagged, "expected_share": expected_share, "arrived_share": arrived_share,
        "completeness": arrived_share / expected_share if expected_share > 0 else 1.0,
        "complete": not missing,
        "latency_deadline": window + step + timedelta(minutes=max(latencies)) if latencies else None,
        "run_id": run_id, "missing_feeds": [f"{operator}/{feed}" for operator, feed in missing_feeds],
    }


def completeness_rows(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                      run_id: str | None) -> list[dict]:
    """One row per window of [start, end): expected, arrived and missing operators (and feeds) and shares."""
    feeds = event_contracts(settings.contracts_dir)
    arrived_by_window = {key.astimezone(start.tzinfo): value for key, value in _arrived(con, start, end).items()}
    step = timedelta(minutes=settings.window_minutes)
    rows, window = [], start
    while window < end:
        rows.append(_window_row(window, step, feeds, arrived_by_window.get(window, {}), run_id))
        window += step
    return rows


def record_completeness(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                        run_id: str | None) -> dict[str, Any]:
    """Replace window_completeness for [start, end) and stamp district_density's rows with it.
    Runs inside the caller's transaction (the density step's)."""
    rows = completeness_rows(con, settings, start, end, run_id)
    con.execute("DELETE FROM window_completeness WHERE window_start >= ? AND window_start < ?", [start, end])
    insert_rows(con, "window_completeness", rows)
    con.execute(
        "UPDATE district_density AS d SET completeness = w.completeness FROM window_completeness AS w "
        "WHERE d.window_start = w.window_start AND d.window_start >= ? AND d.window_start < ?", [start, end])
    # What the UI shows about who reported: an operator whose drop is flagged short has data in the
    # window but does not count as reported (a count of operators with data would say "5 of 5").
    return {"windows_complete": sum(row["complete"] for row in rows),
            "windows_incomplete": sum(not row["complete"] for row in rows),
            "operators_expected": max((len(row["expected_operators"]) for row in rows), default=0),
            "operators_reported_min": min((len(row["arrived_operators"]) for row in rows), default=0),
            "operators_flagged_short": sorted({operator for row in rows for operator in row["flagged_operators"]}),
            "operators_missing": sorted({operator for row in rows for operator in row["missing_operators"]}),
            "completeness_min": round(min((row["completeness"] for row in rows), default=1.0), 3)}
