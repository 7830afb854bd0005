"""`crowd-platform retention [--as-of TIME] [--dry-run]`: delete what is past retention."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from crowd_platform.cli import CliError
from crowd_platform.common.timeutil import TimeParseError, parse_utc_or_none


def parse_time(value: str | None) -> datetime | None:
    try:
        return parse_utc_or_none(value, what="--as-of")
    except TimeParseError as error:
        raise CliError(str(error)) from None


def add_actor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--purpose", help="purpose recorded in the audit log (default: settings emergency.purpose)")
    parser.add_argument("--actor", help="who runs this (default: $CROWD_ACTOR or the OS user)")


def summary_line(summary: dict) -> str:
    """One line for a retention run: what was deleted, by kind, and whether every deletion verified."""
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(summary["by_kind"].items())) or "nothing"
    verb = "would delete" if summary["dry_run"] else "deleted"
    failed = summary["failed_verification"]
    verdict = "" if summary["dry_run"] else (f"; {failed} FAILED verification" if failed else "; all certificates verified")
    return (f"{summary['mode']} as of {summary['as_of']}: {verb} {summary['objects']} object(s) ({kinds}), "
            f"{summary['rows']} rows, {summary['bytes']:,} bytes; {summary['drops_marked_deleted']} drops marked deleted"
            f"{verdict}")


def run(args: argparse.Namespace) -> int:
    from crowd_platform.governance.retention import apply_retention, outcome_summary
    from crowd_platform.common.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    outcome = apply_retention(settings, parse_time(args.as_of), dry_run=args.dry_run, actor=args.actor,
                              purpose=args.purpose)
    summary = outcome_summary(outcome)
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True, default=str))
        return 1 if outcome.failed else 0
    if args.dry_run:
        for deletion in outcome.deletions:
            described = deletion.describe()
            print(f"  would delete {described['kind']} {described['object_id']} "
                  f"({described['rows'] if described['rows'] is not None else '-'} rows, {described['bytes']} bytes) "
                  f"under {described['policy']} [{described['period']}]")
    print(summary_line(summary))
    return 1 if outcome.failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retention",
        help="delete data past its contract retention, with deletion certificates",
        description="Delete raw drops, lake partitions, quarantine, staging leftovers and warehouse rows past the "
                    "retention declared in data_contracts/, compact the warehouse, and write certificates.",
    )
    parser.add_argument("--as-of", help="reference time (ISO, UTC; default now), e.g. to replay the demo's clock")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    parser.add_argument("--json", action="store_true", help="print the run's summary as JSON instead of one line")
    add_actor_arguments(parser)
    parser.set_defaults(handler=run)
