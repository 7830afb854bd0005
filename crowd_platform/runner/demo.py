"""The demo's data: a Jakarta week with gatherings on its last day, and what to report about it.

`crowd-platform demo` (cli/demo.py) prints; this module decides what is simulated and reads
the warehouse for the summary.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

# Monday 30 March - Friday 3 April 2020, a week without public holidays: Mon-Wed build the
# bootstrap baseline (3 days, the minimum), Thursday 2 April is the quiet day on which nothing
# may alert, Friday 3 April has the injected gatherings. (The week before holds Nyepi, Wed 25
# March: a demo there evaluates only its Friday, since a holiday is left out of baselines.)
DEMO_START = date(2020, 3, 30)
DEMO_DAYS = 5
DEMO_SUBSCRIBERS = 30_000


# Gatherings on the last simulated day only: the days before it build the baseline the
# alerts are measured against (at least 3 non-holiday days). Local time is WIB (UTC+7).
DEMO_PLACES = (
    {"site": "Masjid Istiqlal", "kind": "friday prayer", "lon": 106.8313, "lat": -6.1702, "local_hour": 11.5, "hours": 2.0, "share": 0.08},
    {"site": "Pasar Tanah Abang", "kind": "market", "lon": 106.8133, "lat": -6.1879, "local_hour": 8.0, "hours": 2.0, "share": 0.06},
    {"site": "Gelora Bung Karno", "kind": "stadium event", "lon": 106.8021, "lat": -6.2185, "local_hour": 19.0, "hours": 3.0, "share": 0.10},
)


def demo_gatherings(last_day: date, subscribers: int) -> list[dict]:
    gatherings = []
    for place in DEMO_PLACES:
        start = datetime.combine(last_day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=place["local_hour"] - 7)
        gatherings.append({
            "id": place["site"].lower().replace(" ", "-"),
            "site": place["site"],
            "kind": place["kind"],
            "lon": place["lon"],
            "lat": place["lat"],
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + timedelta(hours=place["hours"])).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "extra_subscribers": int(subscribers * place["share"]),
        })
    return gatherings


def alerts_by_day(connection, gathering_day: date) -> list[dict]:
    """Per evaluated UTC day: windows evaluated and alerts opened; the gathering day is marked."""
    from crowd_platform.common.warehouse import read_sql

    rows = connection.execute(read_sql("alerts/alerts_by_day")).fetchall()
    return [{"day": day, "windows": windows, "alerts": alerts, "district_alerts": district,
             "kind": "gatherings" if day == gathering_day else "quiet"} for day, windows, alerts, district in rows]


def demo_totals(connection) -> dict:
    """Counts for the demo summary: drops by status, windows computed, alerts, broadcast requests."""
    def count(sql: str) -> int:
        return int(connection.execute(sql).fetchone()[0] or 0)

    return {
        "drops": dict(connection.execute("SELECT status, count(*) FROM drops GROUP BY status").fetchall()),
        "windows": count("SELECT count(DISTINCT window_start) FROM district_density"),
        "alerts": count("SELECT count(*) FROM crowd_alerts"),
        "requests": count("SELECT count(*) FROM broadcast_requests"),
    }
