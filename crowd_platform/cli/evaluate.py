"""`crowd-platform evaluate`: crowd_alerts against the simulator's ground truth (alerts/evaluation.py)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from crowd_platform.cli import CliError
from crowd_platform.common.settings import env

def _matching_rules() -> str:
    from crowd_platform.alerts import evaluation

    return (evaluation.__doc__ or "").split("\n\n", 1)[-1]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare crowd alerts with the simulator's ground truth (precision, recall, latency, false alerts)",
        description=_matching_rules(),
    )
    parser.add_argument("--home", default=env("CROWD_HOME"), help="CROWD_HOME (default $CROWD_HOME)")
    parser.add_argument("--ground-truth", type=Path, help="ground_truth.json (default HOME/ground_truth.json)")
    parser.add_argument("--radius-m", type=float, default=1500.0, help="site-to-gathering distance that still matches (default 1500)")
    parser.add_argument("--late-windows", type=int, default=2, help="windows after a gathering's end an alert may still open (default 2)")
    parser.add_argument("--day", action="append", default=[], metavar="YYYY-MM-DD",
                        help="only alerts opened and windows evaluated on this UTC day (repeatable; default all)")
    parser.add_argument("--area", help="comma-separated kecamatan codes or names: count districts per 100 in this area "
                                       "only (a simulation restricted with simulate --area); alerts anywhere still count")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=handle)


def format_table(report: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        return "n/a" if value is None else str(value)

    target = report["target_group"]
    false = report["false_alerts"]
    lines = [
        f"{'metric':<52} {'value':>10}  target",
        f"{'alerts':<52} {report['alerts']:>10}",
        f"{'precision (alerts matching a gathering / alerts)':<52} {show(report['precision']):>10}  >= 0.9",
    ]
    for label, band in report["recall_by_band"].items():
        lines.append(f"{'recall, ' + label + ' (' + str(band['detected']) + '/' + str(band['gatherings']) + ')':<52} "
                     f"{show(round(band['recall'], 3) if band['recall'] is not None else None):>10}")
    lines += [
        f"{'recall, >= 2000 people and >= 30 min':<52} {show(target['recall']):>10}  >= 0.9",
        f"{'  of which first alert <= 2 windows after start':<52} {show(target['recall_within_2_windows']):>10}  >= 0.9",
        f"{'detection latency, median windows':<52} {show(report['latency_windows']['median']):>10}  <= 2",
        f"{'detection latency, max windows':<52} {show(report['latency_windows']['max']):>10}",
        f"{'false district alerts per 100 districts per normal day':<52} "
        f"{show(false['per_100_districts_per_normal_day']):>10}  <= 1",
        f"{'false site alerts per 100 sites per normal day':<52} {show(false['per_100_sites_per_normal_day']):>10}",
        f"{'normal (non-holiday) days evaluated':<52} {false['normal_days']:>10}",
    ]
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    from crowd_platform.alerts.evaluation import EvaluationError, evaluate, load_ground_truth, load_inputs
    from crowd_platform.alerts.rules import rules_from_settings
    from crowd_platform.common import warehouse
    from crowd_platform.common.settings import get_settings

    settings = get_settings(args.home)
    truth_path = args.ground_truth or settings.home / "ground_truth.json"
    if not truth_path.exists():
        raise CliError(f"no ground truth at {truth_path} (run simulate first or pass --ground-truth)")
    if not settings.warehouse_path.exists():
        raise CliError(f"no warehouse at {settings.warehouse_path} (run the pipeline first)")
    try:
        gatherings = load_ground_truth(truth_path)
    except EvaluationError as error:
        raise CliError(str(error)) from None
    print(f"evaluating alerts in {settings.warehouse_path} against {len(gatherings)} gathering(s)", flush=True)
    rules = rules_from_settings(settings)
    try:
        days = {datetime.strptime(day, "%Y-%m-%d").date() for day in args.day} if args.day else None
    except ValueError:
        raise CliError(f"--day must be YYYY-MM-DD, got {args.day}") from None
    area = [name for name in (args.area or "").split(",") if name.strip()] or None
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        try:
            inputs = load_inputs(con, rules.levels, settings.window_minutes, days=days, area=area)
        except ValueError as error:
            raise CliError(str(error)) from None
    report = evaluate(inputs.pop("alerts"), gatherings, window_minutes=settings.window_minutes,
                      radius_m=args.radius_m, late_windows=args.late_windows, **inputs)
    print(json.dumps(report, indent=2, default=str) if args.json else format_table(report))
    return 0
