"""`crowd-platform sunset [--keep-aggregates] --confirm`: purge all personal data at the end of the emergency."""

from __future__ import annotations

import argparse

from crowd_platform.cli import CliError
from crowd_platform.cli.retention import add_actor_arguments


def run(args: argparse.Namespace) -> int:
    from crowd_platform.common.settings import get_settings
    from crowd_platform.governance.retention import sunset

    if not args.confirm:
        raise CliError("sunset deletes every personal and pseudonymized datum for good; add --confirm")
    settings = get_settings()
    if not settings.warehouse_path.exists():
        raise CliError(f"no warehouse at {settings.warehouse_path}")
    report = sunset(settings, keep_aggregates=args.keep_aggregates, actor=args.actor, purpose=args.purpose, progress=print)
    for line in report.lines():
        print(line)
    return 0 if report.clean else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sunset",
        help="end of emergency: purge all personal data, certify, verify nothing is left",
        description="Delete raw drops, staging, lake, quarantine, bts_presence, internal density and baselines "
                    "(and, unless --keep-aggregates, published density, alerts and broadcasts), issue deletion "
                    "certificates, compact the warehouse and scan every remaining file for subscriber keys.",
    )
    parser.add_argument("--keep-aggregates", action="store_true",
                        help="keep k-anonymised aggregates (district_density_published, alerts, broadcasts)")
    parser.add_argument("--confirm", action="store_true", help="required: this cannot be undone")
    add_actor_arguments(parser)
    parser.set_defaults(handler=run)
