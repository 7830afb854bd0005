"""`crowd-platform demo`: simulate a Jakarta week, run the whole asset graph, summarise.

The main job on the embedded default: CROWD_HOME=./.crowd, Dagster on SQLite, DuckDB
warehouse. Everything goes through the same definitions as the UI (see lib/orchestration).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import date, datetime, timedelta, timezone

from crowd_platform.cli import CliError

# Monday 30 March - Friday 3 April 2020, a week without public holidays: Mon-Wed build the
# bootstrap baseline (3 days, the minimum), Thursday 2 April is the quiet day on which nothing
# may alert, Friday 3 April has the injected gatherings. (The week before holds Nyepi, Wed 25
# March: a demo there evaluates only its Friday, since a holiday is left out of baselines.)
DEMO_START = date(2020, 3, 30)
DEMO_DAYS = 5
DEMO_SUBSCRIBERS = 30_000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="simulate Jakarta days, run everything through Dagster, print a summary",
        description="Simulate operator drops for Jakarta, process them through the asset graph, evaluate "
        "alerts against the injected gatherings, write the audit report, then apply retention.",
    )
    parser.add_argument("--home", help="storage root (default $CROWD_HOME or ./.crowd)")
    parser.add_argument("--fresh", action="store_true", help="delete an existing demo storage root first")
    parser.add_argument("--start", default=DEMO_START.isoformat(), help="first simulated day (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, default=DEMO_DAYS)
    parser.add_argument("--subscribers", type=int, default=DEMO_SUBSCRIBERS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hours", help="only these UTC hours of each day, FROM-TO (a shorter demo; default all day)")
    parser.add_argument("--no-retention", action="store_true", help="keep personal data (skip the retention step)")
    parser.set_defaults(handler=handle)


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


def _count(connection, sql: str) -> int:
    return int(connection.execute(sql).fetchone()[0] or 0)


def alerts_by_day(connection, gathering_day: date) -> list[dict]:
    """Per evaluated UTC day: windows evaluated and alerts opened; the gathering day is marked."""
    rows = connection.execute(
        "WITH evaluated AS (SELECT CAST(timezone('UTC', window_start) AS DATE) AS day, count(*) AS windows "
        "FROM alert_evaluations WHERE evaluated GROUP BY 1), "
        "opened AS (SELECT CAST(timezone('UTC', opened_window) AS DATE) AS day, count(*) AS alerts, "
        "count(*) FILTER (WHERE level <> 'site') AS district_alerts FROM crowd_alerts GROUP BY 1) "
        "SELECT e.day, e.windows, coalesce(o.alerts, 0), coalesce(o.district_alerts, 0) "
        "FROM evaluated e LEFT JOIN opened o USING (day) ORDER BY e.day").fetchall()
    return [{"day": day, "windows": windows, "alerts": alerts, "district_alerts": district,
             "kind": "gatherings" if day == gathering_day else "quiet"} for day, windows, alerts, district in rows]


def handle(args: argparse.Namespace) -> int:
    from crowd_platform.common import warehouse
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import process_pending
    from crowd_platform.common.settings import get_settings
    from crowd_platform.simulator import simulate

    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise CliError(f"--start must be YYYY-MM-DD, got {args.start!r}") from None
    if args.days < 1 or args.subscribers < 100:
        raise CliError("--days must be >= 1 and --subscribers >= 100")
    from crowd_platform.cli.simulate import _hours

    hours = _hours(args.hours)
    settings = get_settings(args.home)
    if settings.warehouse_path.exists() or (settings.landing.exists() and any(settings.landing.iterdir())):
        if not args.fresh:
            raise CliError(f"{settings.home} already holds data; pass --fresh to start the demo over")
        shutil.rmtree(settings.home)
    settings.ensure_dirs()
    began = time.monotonic()
    # A few tens of thousands of simulated subscribers stand for 11 million people: use the
    # rules for sampled populations (same statistics, smaller minimum excess of people).
    os.environ.setdefault("CROWD_ALERT_RULES", "config/alert_rules_sampled.yaml")

    print(f"[1/5] simulating {args.days} days of Jakarta from {start} ({args.subscribers:,} subscribers, seed {args.seed})")
    gathering_day = start + timedelta(days=args.days - 1)
    gatherings = demo_gatherings(gathering_day, args.subscribers)
    simulated = simulate(settings.home, start=start, days=args.days, subscribers=args.subscribers, seed=args.seed,
                         gatherings=gatherings, progress=True, hours=hours)

    print("[2/5] processing the landing area through Dagster")
    instance = get_instance(settings)
    summary = process_pending(settings, instance, purpose=settings.purpose, actor="demo")

    print("[3/5] evaluating alerts against the injected gatherings")
    from crowd_platform.cli import main as cli_main

    with warehouse.connect(settings.warehouse_path, read_only=True) as connection:
        days = alerts_by_day(connection, gathering_day)
    for row in days:
        label = "injected gatherings" if row["kind"] == "gatherings" else "quiet day, no gathering"
        print(f"  {row['day']} ({label}): {row['alerts']} alerts opened ({row['district_alerts']} district, "
              f"{row['alerts'] - row['district_alerts']} site) in {row['windows']} evaluated windows")
    if not days:
        print("  no day had a baseline yet (at least 3 earlier non-holiday days are needed)")
    cli_main(["evaluate", "--home", str(settings.home)])

    print("[4/5] writing the auditor's report")
    period_end = start + timedelta(days=args.days)
    cli_main(["audit", "report", "--home", str(settings.home), "--from", start.isoformat(), "--to", period_end.isoformat()])

    with warehouse.connect(settings.warehouse_path) as connection:
        drops = dict(connection.execute("SELECT status, count(*) FROM drops GROUP BY status").fetchall())
        windows = _count(connection, "SELECT count(DISTINCT window_start) FROM district_density")
        alerts = _count(connection, "SELECT count(*) FROM crowd_alerts")
        requests = _count(connection, "SELECT count(*) FROM broadcast_requests")

    if not args.no_retention:
        as_of = datetime.combine(period_end, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=25)
        print(f"[5/5] retention as of {as_of:%Y-%m-%d %H:%M}Z (pseudonymized data older than its contract period is deleted)")
        cli_main(["retention", "--home", str(settings.home), "--as-of", as_of.isoformat()])
        cli_main(["audit", "verify", "--home", str(settings.home)])
    else:
        print("[5/5] retention skipped (--no-retention)")

    gatherings = simulated.get("gatherings", gatherings)
    elapsed = time.monotonic() - began
    print()
    print("crowd_platform demo summary")
    print(f"  drops accepted / quarantined / duplicate: {drops.get('accepted', 0) + drops.get('deleted', 0)}"
          f" / {drops.get('quarantined', 0)} / {drops.get('duplicate', 0)}")
    print(f"  windows computed: {windows} over {len(summary.days)} days ({summary.runs} Dagster runs)")
    print(f"  alerts raised: {alerts} for {len(gatherings)} injected gatherings")
    quiet = [row for row in days if row["kind"] == "quiet"]
    if quiet:
        print(f"  quiet days evaluated: {len(quiet)}, alerts on them: {sum(row['alerts'] for row in quiet)}")
    print(f"  broadcast requests written: {requests} (outbox: {settings.outbox})")
    print(f"  report: {settings.reports}")
    print(f"  Dagster UI: make dev (DAGSTER_HOME={settings.dagster_home})")
    print(f"  took {elapsed:.0f} s")
    return 0 if summary.ok else 1
