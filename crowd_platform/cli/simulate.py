"""`crowd-platform simulate`: synthetic operator drops for Jakarta into the landing area."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from crowd_platform.cli import CliError
from crowd_platform.common.settings import env


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write synthetic operator drops for Jakarta (real cells and population, synthetic people)",
        description=(
            "Write one drop per operator per 15-minute window (each in its contract's layout, with a "
            "manifest), one cell-list drop per operator, and ground_truth.json (injected gatherings "
            "and faults) under --home. Same seed, same bytes."
        ),
    )
    parser.add_argument("--home", default=env("CROWD_HOME"), help="CROWD_HOME to write into (default $CROWD_HOME)")
    parser.add_argument("--out", dest="home", help="alias of --home")
    parser.add_argument("--start", default="2020-03-23", help="first simulated UTC day, YYYY-MM-DD (default 2020-03-23)")
    parser.add_argument("--days", type=int, default=5, help="number of days (default 5)")
    parser.add_argument("--subscribers", type=int, default=50_000, help="subscribers over all operators (default 50000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--hours", help="only windows in these UTC hours of each day, FROM-TO (e.g. 10-14 = 10:00 to 14:00)")
    parser.add_argument("--operators", help="comma-separated operators (default: every operator with a contract)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--gatherings", type=Path, help="JSON list of gatherings to inject instead of the default ones")
    group.add_argument("--quiet", action="store_true", help="inject no gatherings")
    parser.add_argument("--faults", default="", help="comma-separated faults: late,duplicate,redrop,corrupt,msisdn")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=handle)


def _hours(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        low, high = (int(part) for part in text.split("-"))
    except ValueError:
        raise CliError(f"--hours must be FROM-TO in whole UTC hours, got {text!r}") from None
    if not 0 <= low < high <= 24:
        raise CliError("--hours needs 0 <= FROM < TO <= 24")
    return low, high


def handle(args: argparse.Namespace) -> int:
    from crowd_platform.simulator import FAULT_TYPES, simulate
    from crowd_platform.simulator.gatherings import load_gatherings

    if not args.home:
        raise CliError("no --home given and CROWD_HOME is not set")
    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise CliError(f"--start must be YYYY-MM-DD, got {args.start!r}") from None
    if args.days < 1 or args.subscribers < 1:
        raise CliError("--days and --subscribers must be at least 1")
    faults = {name.strip() for name in args.faults.split(",") if name.strip()}
    if faults - set(FAULT_TYPES):
        raise CliError(f"unknown fault(s) {', '.join(sorted(faults - set(FAULT_TYPES)))}; known: {', '.join(FAULT_TYPES)}")
    gatherings = None
    if args.quiet:
        gatherings = []
    elif args.gatherings:
        try:
            gatherings = load_gatherings(args.gatherings)
        except (OSError, ValueError) as error:
            raise CliError(f"cannot read --gatherings {args.gatherings}: {error}") from None
    operators = [name.strip() for name in args.operators.split(",") if name.strip()] if args.operators else None
    hours = _hours(args.hours)
    print(f"simulating {args.days} day(s) from {start} for {args.subscribers:,} subscribers (seed {args.seed}) into {args.home}")
    try:
        summary = simulate(Path(args.home), start=start, days=args.days, subscribers=args.subscribers, seed=args.seed,
                           hours=hours, gatherings=gatherings, faults=faults, operators=operators,
                           progress=not args.no_progress)
    except ValueError as error:
        raise CliError(str(error)) from None
    drops = sum(summary["drops"].values())
    print(
        f"wrote {drops:,} drops ({summary['windows']} windows x {len(summary['drops'])} operators, + cell lists), "
        f"{summary['total_events']:,} events, {len(summary['gatherings'])} gatherings, {len(summary['faults'])} faults "
        f"in {summary['elapsed_s']:.1f} s; ground truth: {summary['ground_truth']}"
    )
    if summary["empty_windows"]:
        skipped = ", ".join(f"{operator} {count}" for operator, count in sorted(summary["empty_windows"].items()))
        print(f"windows without any event (no drop written): {skipped}; use more subscribers")
    return 0
