"""`crowd-platform demo`: simulate a Jakarta week, run the whole asset graph, summarise.

The main job on the embedded default: CROWD_HOME=./.crowd, Dagster on SQLite, DuckDB
warehouse. Everything goes through the same definitions as the UI (see runner/orchestration.py):
the drops through the landing sensor's requests, then `retention` and `audit_log` through their
own jobs, as the 02:00 and 02:30 schedules would run them. What is simulated and summarised is
in runner/demo.py; the demo's footing (how much is simulated) in simulator/footing.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from crowd_platform.cli import CliError
from crowd_platform.runner.demo import DEMO_START
from crowd_platform.simulator.footing import DEMO_FOOTING, FULL_FOOTING, fit_gatherings

SAMPLED_RULES = "config/alert_rules_sampled.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="simulate Jakarta days, run everything through Dagster, print a summary",
        description="Simulate operator drops for Jakarta, process them through the asset graph, evaluate "
        "alerts against the injected gatherings, apply retention and write the audit checkpoint through "
        "Dagster, then write the audit report. Default: a short footing (about 2 minutes on 2 cores); "
        "--full: the full-size week (all day, 30 000 subscribers; 10 minutes or more).",
    )
    parser.add_argument("--home", help="storage root (default $CROWD_HOME or ./.crowd)")
    parser.add_argument("--fresh", action="store_true", help="delete an existing demo storage root (and its witness folder) first")
    parser.add_argument("--full", action="store_true",
                        help=f"the full-size week: {FULL_FOOTING.describe()} (default: {DEMO_FOOTING.describe()})")
    parser.add_argument("--start", default=DEMO_START.isoformat(), help="first simulated day (YYYY-MM-DD)")
    parser.add_argument("--days", type=int, help="simulated days (default 5: 3 baseline days, a quiet day, a gathering day)")
    parser.add_argument("--subscribers", type=int, help="simulated subscribers over all operators")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hours", help="only these UTC hours of each day, FROM-TO, or 'all' (default: the footing's)")
    parser.add_argument("--no-retention", action="store_true", help="keep personal data (skip the retention step)")
    parser.set_defaults(handler=handle)


def _witness_folder(home: Path) -> Path | None:
    """The demo's witness folder, next to the storage root (checkpoints are meant to live outside
    it), unless CROWD_WITNESS names one already (then None: the demo leaves it alone)."""
    from crowd_platform.common.settings import env

    return None if env("CROWD_WITNESS") else home.parent / f"{home.name}-witness"


def _fresh_settings(args: argparse.Namespace):
    from crowd_platform.common.settings import env, get_settings

    home = Path(args.home or env("CROWD_HOME") or Path.cwd() / ".crowd").resolve()
    witness = _witness_folder(home)
    if witness is not None:
        # Checkpoints of an earlier demo's chain would not match a new chain: they go with it.
        os.environ["CROWD_WITNESS"] = str(witness)
    settings = get_settings(str(home))
    holds_data = settings.warehouse_path.exists() or (settings.landing.exists() and any(settings.landing.iterdir()))
    witnessed = witness is not None and witness.exists() and any(witness.glob("*.json*"))
    if holds_data or witnessed:
        if not args.fresh:
            raise CliError(f"{settings.home} already holds data; pass --fresh to start the demo over")
        shutil.rmtree(settings.home, ignore_errors=True)
        if witness is not None:
            shutil.rmtree(witness, ignore_errors=True)
    settings.ensure_dirs()
    if witness is not None:
        witness.mkdir(parents=True, exist_ok=True)
        (witness / ".gitignore").write_text("# the demo's witness checkpoints (crowd-platform demo)\n*\n", encoding="utf-8")
    return settings


def _footing_settings(settings, footing):
    """The footing's GX budget through a copy of the platform configuration in CROWD_HOME/demo/
    (CROWD_CONFIG), unless CROWD_CONFIG is set already."""
    from crowd_platform.common.settings import DEFAULT_CONFIG, env, get_settings
    from crowd_platform.simulator.footing import footing_config

    if env("CROWD_CONFIG"):
        return settings
    written = footing_config(footing, DEFAULT_CONFIG, settings.home / "demo" / "platform.yaml")
    if written is None:
        return settings
    os.environ["CROWD_CONFIG"] = str(written)
    return get_settings(str(settings.home))


def _print_alert_days(days: list[dict]) -> None:
    for row in days:
        label = "injected gatherings" if row["kind"] == "gatherings" else "quiet day, no gathering"
        print(f"  {row['day']} ({label}): {row['alerts']} alerts opened ({row['district_alerts']} district, "
              f"{row['alerts'] - row['district_alerts']} site) in {row['windows']} evaluated windows")
    if not days:
        print("  no day had a baseline yet (at least 3 earlier non-holiday days are needed)")


def _print_evaluation(report: dict, truth: dict) -> None:
    """Precision and recall, and in plain words what a sampled footing means for both and for "people"."""
    precision, target = report["precision"], report["target_group"]
    detected = sum(band["detected"] for band in report["recall_by_band"].values())
    gatherings = sum(band["gatherings"] for band in report["recall_by_band"].values())
    matched = round((precision or 0) * report["alerts"])
    print(f"  precision {_fmt(precision)} ({matched} of {report['alerts']} alerts at an injected gathering; production target >= 0.9)")
    print(f"  recall {detected}/{gatherings} gatherings detected"
          + (f"; of those adding >= 2000 people for >= 30 min: {_fmt(target['recall'])} (target >= 0.9)"
             if target.get("gatherings") else "")
          + (f"; median latency {report['latency_windows']['median']} windows" if report["latency_windows"]["median"] is not None else ""))
    subscribers, population = truth.get("subscribers"), truth.get("population")
    if subscribers and population:
        scale = population / subscribers
        print(f"  what the sampled footing means: {subscribers:,} simulated subscribers stand for {population:,.0f} people "
              f"(1 for about {scale:,.0f}).")
        print("    People: the platform counts what the operators send, so every 'people' figure it shows (density,")
        print(f"    alerts, report, outbox requests) is people of the sample; multiply by about {scale:,.0f} for the city.")
        print("    The ground truth (ground_truth.json, people_added) is in people of the city.")
    unmatched, near = report.get("unmatched", 0), report.get("unmatched_near_a_gathering", 0)
    if unmatched:
        print(f"    Precision: of the {unmatched} alerts that match no gathering, {near} are within {NEIGHBOUR_KM:g} km of one: a")
        print("    crowd at a cell is spread over the districts its coverage overlaps, and a few dozen sampled subscribers")
        print("    more is enough to alert there (config/alert_rules_sampled.yaml), but the evaluation counts only the")
        print("    gathering's own kelurahan, kecamatan and sites. The 0.9 target is for production data at full scale")
        print("    (docs/detection.md); the quiet day above shows that nothing alerts by itself.")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


NEIGHBOUR_KM = 3.0


def _evaluate(settings) -> tuple[dict, dict]:
    """`crowd-platform evaluate`'s report, plus how many unmatched alerts lie next to a gathering."""
    import json

    import shapely

    from crowd_platform.alerts.evaluation import evaluate, load_ground_truth, load_inputs, matches
    from crowd_platform.alerts.rules import rules_from_settings
    from crowd_platform.common import warehouse
    from crowd_platform.geography import maps

    truth_path = settings.home / "ground_truth.json"
    gatherings = load_ground_truth(truth_path)
    rules = rules_from_settings(settings)
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        inputs = load_inputs(con, rules.levels, settings.window_minutes)
        shapes = {}
        for level in {alert.level for alert in inputs["alerts"] if alert.level != "site"}:
            frame = maps.map_districts(con, level)
            shapes.update({(level, code): geometry for code, geometry in zip(frame["district_code"], frame.geometry)})
    alerts = inputs.pop("alerts")
    report = evaluate(alerts, gatherings, window_minutes=settings.window_minutes, **inputs)
    unmatched = [alert for alert in alerts if not any(
        matches(alert, gathering, inputs["kabkota_of"], settings.window_minutes, 1500.0, 2) for gathering in gatherings)]
    points = [shapely.Point(gathering["lon"], gathering["lat"]) for gathering in gatherings]

    def near(alert) -> bool:
        shape = (shapely.Point(alert.site_lon, alert.site_lat) if alert.site_lon is not None
                 else shapes.get((alert.level, alert.place_id)))
        return shape is not None and any(shape.distance(point) * 111.0 <= NEIGHBOUR_KM for point in points)

    report["unmatched_near_a_gathering"] = sum(1 for alert in unmatched if near(alert))
    report["unmatched"] = len(unmatched)
    return report, json.loads(truth_path.read_text(encoding="utf-8"))


def _print_summary(settings, totals: dict, days: list[dict], summary, gatherings: list, governance,
                   timings: dict[str, float], footing) -> None:
    drops = totals["drops"]
    print()
    print("crowd_platform demo summary")
    print(f"  footing: {footing.describe()}")
    print(f"  drops accepted / quarantined / duplicate: {drops.get('accepted', 0) + drops.get('deleted', 0)}"
          f" / {drops.get('quarantined', 0)} / {drops.get('duplicate', 0)}")
    print(f"  windows computed: {totals['windows']} over {len(summary.days)} days ({summary.runs} Dagster runs)")
    print(f"  alerts raised: {totals['alerts']} for {len(gatherings)} injected gatherings")
    quiet = [row for row in days if row["kind"] == "quiet"]
    if quiet:
        print(f"  quiet days evaluated: {len(quiet)}, alerts on them: {sum(row['alerts'] for row in quiet)}")
    print(f"  broadcast requests written: {totals['requests']} (outbox: {settings.outbox})")
    if governance is not None:
        for asset, run_id in governance.runs.items():
            print(f"  {asset}: Dagster run {run_id}")
    print(f"  witness checkpoints: {settings.witness} (outside CROWD_HOME; set CROWD_WITNESS to it for `audit verify`)")
    print(f"  report: {settings.reports}")
    print(f"  Dagster UI: make dev (DAGSTER_HOME={settings.dagster_home})")
    from crowd_platform.api.server import api_addresses

    addresses = api_addresses(settings)
    print(f"  published API: make serve, then {addresses['api']} (docs/api.md); a token first: "
          f"crowd-platform tokens issue --name you --all")
    print(f"  operations map: {addresses['map']}#token=<your token>")
    print(f"  took {sum(timings.values()):.0f} s (" + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()) + ")")


DEMO_ENVIRONMENT = ("CROWD_LOG_LEVEL", "CROWD_WITNESS", "CROWD_CONFIG", "CROWD_ALERT_RULES", "CROWD_ACTOR")


def handle(args: argparse.Namespace) -> int:
    """The demo sets a few CROWD_* variables for its runs; called in-process (tests), it puts them back."""
    saved = {key: os.environ.get(key) for key in DEMO_ENVIRONMENT}
    try:
        return _demo(args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _demo(args: argparse.Namespace) -> int:
    # The demo prints its story; Dagster's own warnings (e.g. "not evaluated: no baseline" on the
    # baseline days) stay in the event log and the UI. CROWD_LOG_LEVEL=WARNING echoes them.
    os.environ.setdefault("CROWD_LOG_LEVEL", "ERROR")
    from crowd_platform.cli import main as cli_main
    from crowd_platform.cli.simulate import _hours
    from crowd_platform.common import warehouse
    from crowd_platform.runner.demo import alerts_by_day, demo_gatherings, demo_totals
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import process_pending, run_governance
    from crowd_platform.simulator import simulate

    try:
        start = date.fromisoformat(args.start)
    except ValueError:
        raise CliError(f"--start must be YYYY-MM-DD, got {args.start!r}") from None
    footing = (FULL_FOOTING if args.full else DEMO_FOOTING).with_overrides(
        days=args.days, subscribers=args.subscribers,
        hours=(None if args.hours == "all" else _hours(args.hours)) if args.hours else ...)
    if footing.days < 1 or footing.subscribers < 100:
        raise CliError("--days must be >= 1 and --subscribers >= 100")
    settings = _fresh_settings(args)
    settings = _footing_settings(settings, footing)
    timings: dict[str, float] = {}
    began = time.monotonic()

    def lap(name: str) -> None:
        nonlocal began
        timings[name] = time.monotonic() - began
        began = time.monotonic()

    # A few tens of thousands of simulated subscribers stand for 11 million people: use the
    # rules for sampled populations (same statistics, smaller minimum excess of people).
    os.environ.setdefault("CROWD_ALERT_RULES", SAMPLED_RULES)
    actor = os.environ.setdefault("CROWD_ACTOR", "demo")  # runs, certificates and audit records name it
    purpose = settings.purpose

    print(f"[1/6] simulating {footing.days} days of Jakarta from {start} ({footing.describe(days=False)}, seed {args.seed})")
    gathering_day = start + timedelta(days=footing.days - 1)
    planned = demo_gatherings(gathering_day, footing.subscribers)
    gatherings = fit_gatherings(planned, footing.hours)
    for before, after in zip(planned, gatherings):
        if before["start"] != after["start"]:
            print(f"  {after['site']} ({after['kind']}) moved into the simulated hours: {after['start'][11:16]}-{after['end'][11:16]} UTC "
                  f"instead of {before['start'][11:16]}-{before['end'][11:16]} (--full keeps every gathering at its time)")
    simulated = simulate(settings.home, start=start, days=footing.days, subscribers=footing.subscribers, seed=args.seed,
                         gatherings=gatherings, progress=True, hours=footing.hours)
    lap("simulate")

    print("[2/6] processing the landing area through Dagster (landing sensor, geography_job, daily_job, window_job, indicators_job)")
    instance = get_instance(settings)
    summary = process_pending(settings, instance, purpose=purpose, actor=actor)
    lap("process")

    print("[3/6] evaluating alerts against the injected gatherings")
    with warehouse.connect(settings.warehouse_path, read_only=True) as connection:
        days = alerts_by_day(connection, gathering_day)
    _print_alert_days(days)
    report, truth = _evaluate(settings)
    _print_evaluation(report, truth)
    with warehouse.connect(settings.warehouse_path, read_only=True) as connection:
        totals = demo_totals(connection)
    lap("evaluate")

    period_end = start + timedelta(days=footing.days)
    governance = None
    if not args.no_retention:
        as_of = datetime.combine(period_end, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=25)
        print(f"[4/6] retention through Dagster (retention_job) as of {as_of:%Y-%m-%d %H:%M}Z: "
              "pseudonymized data past its contract period is deleted, with certificates")
        governance = run_governance(settings, instance, as_of=as_of, purpose=purpose, actor=actor, checkpoint=False)
        _print_retention(governance)
        lap("retention")
    else:
        print("[4/6] retention skipped (--no-retention)")

    print(f"[5/6] audit checkpoint through Dagster (audit_checkpoint_job): chain verified, witness written to {settings.witness}")
    checkpoint = run_governance(settings, instance, purpose=purpose, actor=actor, retention=False)
    if governance is None:
        governance = checkpoint
    else:
        governance.runs.update(checkpoint.runs)
        governance.metadata.update(checkpoint.metadata)
        governance.failed_runs += checkpoint.failed_runs
    meta = checkpoint.metadata.get("audit_log", {})
    if meta:
        print(f"  {meta.get('records')} audit records verified; checkpoint at seq {meta.get('last_seq')} "
              f"({meta.get('witness_checkpoints_matched')} earlier checkpoints matched)")
    lap("checkpoint")

    print("[6/6] writing the auditor's report (after retention, so its deletions and certificates are in it)")
    last_day = period_end - timedelta(days=1)
    cli_main(["audit", "report", "--home", str(settings.home), "--from", start.isoformat(), "--to", last_day.isoformat()])
    cli_main(["audit", "verify", "--home", str(settings.home)])
    lap("report")
    _print_summary(settings, totals, days, summary, simulated.get("gatherings", gatherings), governance, timings, footing)
    return 0 if summary.ok and governance.ok else 1


def _print_retention(governance) -> None:
    meta = governance.metadata.get("retention")
    if not meta:
        print(f"  FAILED: {', '.join(governance.failed_runs) or 'no materialization'}")
        return
    kinds = meta.get("by_kind") or {}
    listed = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "nothing"
    print(f"  deleted {meta.get('objects_deleted')} object(s) ({listed}), {meta.get('rows_deleted')} rows; "
          f"{meta.get('drops_marked_deleted')} drops marked deleted; certificates carry run {governance.runs.get('retention', '-')[:8]}")
