"""`crowd-platform demo`: simulate a Jakarta week, run the whole asset graph, summarise.

The main job on the embedded default: CROWD_HOME=./.crowd, Dagster on SQLite, DuckDB
warehouse. Everything goes through the same definitions as the UI (see runner/orchestration.py); what is simulated and
summarised is in runner/demo.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import date, datetime, timedelta, timezone

from crowd_platform.cli import CliError
from crowd_platform.runner.demo import DEMO_DAYS, DEMO_START, DEMO_SUBSCRIBERS

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


def _fresh_settings(args: argparse.Namespace):
    from crowd_platform.common.settings import get_settings

    settings = get_settings(args.home)
    if settings.warehouse_path.exists() or (settings.landing.exists() and any(settings.landing.iterdir())):
        if not args.fresh:
            raise CliError(f"{settings.home} already holds data; pass --fresh to start the demo over")
        shutil.rmtree(settings.home)
    settings.ensure_dirs()
    return settings


def _print_alert_days(days: list[dict]) -> None:
    for row in days:
        label = "injected gatherings" if row["kind"] == "gatherings" else "quiet day, no gathering"
        print(f"  {row['day']} ({label}): {row['alerts']} alerts opened ({row['district_alerts']} district, "
              f"{row['alerts'] - row['district_alerts']} site) in {row['windows']} evaluated windows")
    if not days:
        print("  no day had a baseline yet (at least 3 earlier non-holiday days are needed)")


def _print_summary(settings, totals: dict, days: list[dict], summary, gatherings: list, elapsed: float) -> None:
    drops = totals["drops"]
    print()
    print("crowd_platform demo summary")
    print(f"  drops accepted / quarantined / duplicate: {drops.get('accepted', 0) + drops.get('deleted', 0)}"
          f" / {drops.get('quarantined', 0)} / {drops.get('duplicate', 0)}")
    print(f"  windows computed: {totals['windows']} over {len(summary.days)} days ({summary.runs} Dagster runs)")
    print(f"  alerts raised: {totals['alerts']} for {len(gatherings)} injected gatherings")
    quiet = [row for row in days if row["kind"] == "quiet"]
    if quiet:
        print(f"  quiet days evaluated: {len(quiet)}, alerts on them: {sum(row['alerts'] for row in quiet)}")
    print(f"  broadcast requests written: {totals['requests']} (outbox: {settings.outbox})")
    print(f"  report: {settings.reports}")
    print(f"  Dagster UI: make dev (DAGSTER_HOME={settings.dagster_home})")
    print(f"  took {elapsed:.0f} s")


def handle(args: argparse.Namespace) -> int:
    from crowd_platform.cli import main as cli_main
    from crowd_platform.cli.simulate import _hours
    from crowd_platform.common import warehouse
    from crowd_platform.runner.demo import alerts_by_day, demo_gatherings, demo_totals
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import process_pending
    from crowd_platform.simulator import simulate

    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise CliError(f"--start must be YYYY-MM-DD, got {args.start!r}") from None
    if args.days < 1 or args.subscribers < 100:
        raise CliError("--days must be >= 1 and --subscribers >= 100")
    hours = _hours(args.hours)
    settings = _fresh_settings(args)
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
    summary = process_pending(settings, get_instance(settings), purpose=settings.purpose, actor="demo")

    print("[3/5] evaluating alerts against the injected gatherings")
    with warehouse.connect(settings.warehouse_path, read_only=True) as connection:
        days = alerts_by_day(connection, gathering_day)
    _print_alert_days(days)
    cli_main(["evaluate", "--home", str(settings.home)])

    print("[4/5] writing the auditor's report")
    period_end = start + timedelta(days=args.days)
    cli_main(["audit", "report", "--home", str(settings.home), "--from", start.isoformat(), "--to", period_end.isoformat()])
    with warehouse.connect(settings.warehouse_path) as connection:
        totals = demo_totals(connection)

    if not args.no_retention:
        as_of = datetime.combine(period_end, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=25)
        print(f"[5/5] retention as of {as_of:%Y-%m-%d %H:%M}Z (pseudonymized data older than its contract period is deleted)")
        cli_main(["retention", "--home", str(settings.home), "--as-of", as_of.isoformat()])
        cli_main(["audit", "verify", "--home", str(settings.home)])
    else:
        print("[5/5] retention skipped (--no-retention)")
    _print_summary(settings, totals, days, summary, simulated.get("gatherings", gatherings), time.monotonic() - began)
    return 0 if summary.ok else 1
