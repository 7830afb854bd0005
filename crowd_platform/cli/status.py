"""`crowd-platform status [--json] [--as-of ISO]`: is every operator delivering on time?

Per operator with an active events contract: its last accepted drop (window, received), the lag,
the windows of the local day already due without a drop, the drops of the day in quarantine;
then the completeness of the last windows. Exit code 0 when every operator is fresh, 1 when one
is late (for monitoring), 2 on bad input. Reads the warehouse read-only; counts, windows and
operator names only, never values. Logic: ``crowd_platform/ingestion/freshness.py``.
"""

from __future__ import annotations

import argparse
import json

from crowd_platform.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="operator freshness: last drop, lag, missing windows today, quarantined today; exit 1 if late",
        description="Freshness of every operator's events feed against its contract's latency, and the completeness "
                    "of the last windows. Exit code 0 when all operators are fresh, 1 when one is late.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--as-of", dest="as_of", help="judge as of this instant, ISO-8601 (default: now; e.g. "
                                                      "2020-03-31T03:00:00Z for a simulated week)")
    parser.add_argument("--windows", type=int, default=None, help="how many recent windows to show (default 8)")
    parser.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from crowd_platform.common.settings import get_settings
    from crowd_platform.common.timeutil import TimeParseError, parse_utc, utcnow
    from crowd_platform.common.warehouse import connect
    from crowd_platform.ingestion.freshness import RECENT_WINDOWS, format_report, freshness_report

    try:
        as_of = parse_utc(args.as_of, what="--as-of") if args.as_of else utcnow()
    except TimeParseError as error:
        raise CliError(str(error)) from None
    if args.windows is not None and args.windows < 0:
        raise CliError("--windows must be 0 or more")
    settings = get_settings()
    if not settings.warehouse_path.exists():
        raise CliError(f"no warehouse at {settings.warehouse_path} (set CROWD_HOME or --home)")
    with connect(settings.warehouse_path, read_only=True) as con:
        report = freshness_report(con, settings, as_of,
                                  last_windows=RECENT_WINDOWS if args.windows is None else args.windows)
    print(json.dumps(report.as_dict(), indent=1) if args.json else format_report(report))
    return 0 if report.fresh else 1
