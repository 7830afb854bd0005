"""`crowd-platform run`: process everything pending in CROWD_HOME/landing through Dagster."""

from __future__ import annotations

import argparse

from crowd_platform.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="process pending drops through the Dagster definitions (sensor logic, same jobs as the UI)",
        description="Tick the landing sensor and execute the runs it requests until nothing is pending.",
    )
    parser.add_argument("--home", help="storage root (default $CROWD_HOME or ./.crowd)")
    parser.add_argument("--purpose", help="purpose recorded on every run (default: the emergency's purpose)")
    parser.add_argument("--actor", help="who asked for this run (default $CROWD_ACTOR or the OS user)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from crowd_platform.common.settings import get_settings
    from crowd_platform.runner.idle import nothing_pending

    settings = get_settings(args.home)
    if not settings.landing.exists():
        raise CliError(f"no landing area at {settings.landing} (simulate first, or set CROWD_HOME)")
    if nothing_pending(settings):
        # Dagster is not even imported: landing is empty and the last run ended cleanly.
        print(f"nothing pending in {settings.landing}: 0 runs")
        return 0

    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import process_pending

    settings.ensure_dirs()
    instance = get_instance(settings)
    print(f"processing pending drops in {settings.landing}")
    summary = process_pending(settings, instance, purpose=args.purpose, actor=args.actor)
    print(
        f"done: {summary.runs} runs, {len(summary.windows)} windows over {len(summary.days)} days, "
        f"{summary.geography_runs} cell-list runs, {summary.unroutable_runs} unroutable batches"
    )
    if not summary.ok:
        for failed in summary.failed_runs:
            print(f"failed: {failed}")
        return 1
    return 0
