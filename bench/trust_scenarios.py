"""Quiet-week scenarios with the trouble real operator feeds have, through the real pipeline.

A simulated week (Mon 30 March - Sun 5 April 2020, no public holiday, no gathering) of the
demo's sampled footing (30 000 subscribers by default, 10:00-15:00 WIB) is processed in two phases:

1. "on time": everything except what is held back:
   - outage: Telkomsel (47 % of the market) silent Thursday 11:00-12:00 WIB (4 windows);
   - partial arrival: Friday 12:00-12:30 WIB only Smartfren (5 %) on time (2 windows);
2. "after late data": the held-back drops land, and the platform processes them.

   - short but valid drop: Telkomsel's drop of Thursday 13:00 WIB cut to 40 % of its rows, its
     manifest rewritten to match (row count, bytes, sha256): every contract rule passes;
   - redelivery: Indosat's Friday 13:00 WIB drop corrected as delivery 2 (3 % of its rows removed),
     which lands with the late data and supersedes delivery 1.

Saturday and Sunday come after weekday-only history. Nothing in the week is a crowd, so every
alert is false and every broadcast request an SMS blast to people who should not get one.

``--weekends``: the weekend judged against its own history instead. Five Saturdays (4 April -
2 May 2020) and five Sundays (5 April - 3 May), none a public holiday, same hours and footing; the
last Saturday is quiet, the last Sunday has two crowds at places served by several operators
(Masjid Istiqlal, the demo's; Monas). The last weekend is evaluated by alerts.evaluation: false
alerts per 100 districts and per 100 sites, the crowds found, and for each crowd how many alerts
and which operators received its broadcast request.

The script writes bench/results/trust_scenarios.json (counts only) and prints it; run it on two
checkouts to compare (``--label``).

    python bench/trust_scenarios.py [--workdir DIR] [--label NAME] [--weekends]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "bench" / "results" / "trust_scenarios.json"
START = date(2020, 3, 30)
DAYS = 7
HOURS = (3, 8)
SUBSCRIBERS = 30_000  # the demo's sampled footing
# (operator or None for "all but"), first window, windows, except
HELD_BACK = {
    "outage": {"operators": ["telkomsel"], "start": datetime(2020, 4, 2, 4, 0, tzinfo=timezone.utc), "windows": 4},
    "partial": {"operators": ["telkomsel", "indosat", "xl", "tri"],
                "start": datetime(2020, 4, 3, 5, 0, tzinfo=timezone.utc), "windows": 2},
}

SHORT_DROP = {"operator": "telkomsel", "window": datetime(2020, 4, 2, 6, 0, tzinfo=timezone.utc), "keep": 0.4}
# A corrected redelivery (delivery 2, 3 % of the rows removed) that lands with the late data.
REDELIVERY = {"operator": "indosat", "window": datetime(2020, 4, 3, 6, 0, tzinfo=timezone.utc), "keep_every": 33}
WEEKEND_SATURDAY, WEEKEND_SUNDAY, WEEKENDS = date(2020, 4, 4), date(2020, 4, 5), 5
CROWD_DAY = WEEKEND_SUNDAY + timedelta(days=7 * (WEEKENDS - 1))


def _held_names(scenario: dict) -> list[str]:
    stamps = [(scenario["start"] + timedelta(minutes=15 * index)).strftime("%Y%m%dT%H%MZ")
              for index in range(scenario["windows"])]
    # File names: <operator>_events_<stamp>[_d<delivery>]<extension> (simulator/drops.py).
    return [f"{operator}_events_{stamp}" for operator in scenario["operators"] for stamp in stamps]


def hold_back(landing: Path, holding: Path) -> int:
    """Move the held-back drops (data and manifest) out of landing."""
    prefixes = [prefix for scenario in HELD_BACK.values() for prefix in _held_names(scenario)]
    moved = 0
    for path in sorted(landing.rglob("*")):
        if path.is_file() and any(path.name.startswith(prefix) and path.name[len(prefix)] in "._"
                                  for prefix in prefixes):
            target = holding / path.relative_to(landing)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            moved += 1
    return moved


def land_late(landing: Path, holding: Path) -> None:
    """Data files first, manifests last: the landing protocol's order for a complete drop."""
    files = sorted(path for path in holding.rglob("*") if path.is_file())
    for path in sorted(files, key=lambda item: item.name.endswith(".manifest.json")):
        target = landing / path.relative_to(holding)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)


def shorten_drop(landing: Path) -> dict:
    """Cut one drop to a share of its rows and rewrite its manifest to match (a short but valid drop)."""
    stamp = SHORT_DROP["window"].strftime("%Y%m%dT%H%MZ")
    manifest_path = next((landing / SHORT_DROP["operator"]).glob(f"*_events_{stamp}*.manifest.json"))
    name = json.loads(manifest_path.read_text())["file"]
    return _rewrite(manifest_path, manifest_path.parent, name, lambda number, total: number < int(total * SHORT_DROP["keep"]))


def _rewrite(manifest_path: Path, target_dir: Path, name: str, keep, **manifest_changes) -> dict:
    """Write a copy of a drop under ``name`` into ``target_dir`` with the data lines ``keep`` selects
    (header kept) and its manifest updated to match: row count, bytes, sha256 and ``manifest_changes``."""
    import gzip
    import hashlib

    manifest = json.loads(manifest_path.read_text())
    raw = manifest_path.with_name(manifest["file"]).read_bytes()
    zipped = raw[:2] == b"\x1f\x8b"
    lines = (gzip.decompress(raw) if zipped else raw).splitlines(keepends=True)
    header, body = lines[:1], lines[1:]  # the events contracts declare a header line
    kept = [line for number, line in enumerate(body) if keep(number, len(body))]
    payload = b"".join(header + kept)
    payload = gzip.compress(payload, mtime=0) if zipped else payload
    target_dir.mkdir(parents=True, exist_ok=True)
    (target_dir / name).write_bytes(payload)
    manifest.update(file=name, row_count=len(kept), bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
                    **manifest_changes)
    (target_dir / (name + ".manifest.json")).write_text(json.dumps(manifest, indent=1))
    return {"drop": name, "rows_before": len(body), "rows_after": len(kept)}


def redeliver(landing: Path, holding: Path) -> dict:
    """Delivery 2 of one drop, 3 % of its rows removed, held back to land with the late data."""
    stamp = REDELIVERY["window"].strftime("%Y%m%dT%H%MZ")
    manifest_path = next((landing / REDELIVERY["operator"]).glob(f"*_events_{stamp}.*manifest.json"))
    first = json.loads(manifest_path.read_text())["file"]
    stem, dot, extension = first.partition(".")
    return _rewrite(manifest_path, holding / REDELIVERY["operator"], f"{stem}_d2{dot}{extension}",
                    lambda number, _: number % REDELIVERY["keep_every"] != 0, delivery=2)


def measure(warehouse: Path) -> dict:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        states = "state <> 'retracted'" if "window_completeness" in tables else "true"
        per_day = con.execute(
            f"SELECT CAST(timezone('Asia/Jakarta', opened_window) AS DATE) AS day, "
            f"count(*) FILTER (WHERE level <> 'site'), count(*) FILTER (WHERE level = 'site') "
            f"FROM crowd_alerts WHERE {states} GROUP BY 1 ORDER BY 1").fetchall()
        requests = dict(con.execute("SELECT transition, count(*) FROM broadcast_requests GROUP BY 1").fetchall())
        # The same phone near the same cell warned twice on one day: one crowd, several SMS.
        warned_twice = con.execute(
            "SELECT count(*) FROM (SELECT r.operator, cell, CAST(timezone('Asia/Jakarta', a.opened_window) AS DATE) "
            "FROM broadcast_requests r JOIN crowd_alerts a USING (alert_id), unnest(r.cell_ids) AS u(cell) "
            "WHERE r.transition = 'opened' GROUP BY ALL HAVING count(DISTINCT r.alert_id) > 1)").fetchone()[0]
        cells_warned = con.execute(
            "SELECT count(DISTINCT (r.operator, cell)) FROM broadcast_requests r, unnest(r.cell_ids) AS u(cell) "
            "WHERE r.transition = 'opened'").fetchone()[0]
        retracted = con.execute("SELECT count(*) FROM crowd_alerts WHERE state = 'retracted'").fetchone()[0]
        reasons = dict(con.execute(
            "SELECT coalesce(split_part(reason, ':', 1), 'evaluated'), count(*) FROM alert_evaluations GROUP BY 1"
        ).fetchall())
        districts = con.execute("SELECT count(*) FROM districts WHERE level IN ('kelurahan', 'kecamatan')").fetchone()[0]
        sites = con.execute("SELECT count(DISTINCT site_id) FROM bts_registry").fetchone()[0]
        flagged = [list(row) for row in con.execute(
            "SELECT operator, CAST(window_start AS VARCHAR), volume_flag FROM drops WHERE volume_flag IS NOT NULL "
            "ORDER BY 2, 1").fetchall()] if "drop_profiles" in tables else []
    return {
        "alerts_by_local_day": {str(day): {"district": district, "site": site} for day, district, site in per_day},
        "alerts_district": sum(row[1] for row in per_day), "alerts_site": sum(row[2] for row in per_day),
        "alerts_retracted": retracted,
        "broadcast_requests": requests.get("opened", 0) + requests.get("escalated", 0),
        "cancellation_requests": requests.get("retracted", 0),
        "cells_warned": cells_warned, "cells_warned_by_two_alerts_same_day": warned_twice,
        "windows_by_evaluation": reasons, "districts": districts, "sites": sites, "volume_flagged_drops": flagged,
    }


def weekend_crowds(subscribers: int) -> list[dict]:
    """The demo's Istiqlal crowd and one at Monas, on the last Sunday, inside the simulated hours."""
    from crowd_platform.runner.demo import demo_gatherings

    istiqlal = next(crowd for crowd in demo_gatherings(CROWD_DAY, subscribers) if crowd["id"] == "masjid-istiqlal")
    monas_start = datetime.combine(CROWD_DAY, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=6)  # 13:00 WIB
    monas = {"id": "monas", "site": "Monas", "kind": "rally", "lon": 106.8272, "lat": -6.1754,
             "start": monas_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "end": (monas_start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "extra_subscribers": int(subscribers * 0.05)}
    return [istiqlal, monas]


def measure_weekends(settings, rules_file: str) -> dict:
    """False alerts on the quiet weekend days with 3+ weeks of their own history; the crowds of the last Sunday."""
    from crowd_platform.alerts.evaluation import evaluate, load_inputs, matches
    from crowd_platform.alerts.rules import load_rules
    from crowd_platform.common import warehouse

    rules = load_rules(settings.project_path(rules_file))
    crowds = json.loads((settings.home / "ground_truth.json").read_text())["gatherings"]
    quiet = {WEEKEND_SATURDAY + timedelta(days=7 * 3), WEEKEND_SATURDAY + timedelta(days=7 * 4),
             WEEKEND_SUNDAY + timedelta(days=7 * 3)}
    out: dict = {}
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        for label, days, truth in (("quiet_weekend_days", quiet, []), ("crowd_sunday", {CROWD_DAY}, crowds)):
            inputs = load_inputs(con, rules.levels, settings.window_minutes, days=days)
            alerts = inputs.pop("alerts")
            report = evaluate(alerts, truth, window_minutes=settings.window_minutes, **inputs)
            report["days"] = sorted(day.isoformat() for day in days)
            report.pop("targets", None)
            out[label] = report
            for crowd in truth:
                hits = [alert for alert in alerts
                        if matches(alert, crowd, inputs["kabkota_of"], settings.window_minutes, 1500.0, 2)]
                site_ids = [alert.alert_id for alert in hits if alert.level == "site"]
                operators = con.execute(
                    "SELECT alert_id, list_sort(list(DISTINCT operator)) FROM broadcast_requests "
                    "WHERE list_contains(?, alert_id) AND transition = 'opened' GROUP BY 1 ORDER BY 1",
                    [site_ids]).fetchall()
                out.setdefault("crowds", {})[crowd["id"]] = {
                    "extra_subscribers": crowd.get("extra_subscribers"), "alerts_by_level": {
                        level: sum(alert.level == level for alert in hits) for level in sorted({a.level for a in hits})},
                    "site_alerts": len(site_ids), "operators_per_site_alert": [row[1] for row in operators]}
        out["windows_by_evaluation"] = dict(con.execute(
            "SELECT coalesce(split_part(reason, ':', 1), 'evaluated'), count(*) FROM alert_evaluations GROUP BY 1"
        ).fetchall())
    return out


def run_week(settings, instance, args) -> dict:
    from crowd_platform.runner.orchestration import process_pending
    from crowd_platform.simulator import simulate

    simulate(settings.home, start=START, days=DAYS, subscribers=args.subscribers, seed=args.seed, hours=HOURS,
             gatherings=[])
    short = shorten_drop(settings.landing)
    held = hold_back(settings.landing, args.workdir / "held")
    redelivered = redeliver(settings.landing, args.workdir / "held")
    process_pending(settings, instance, purpose="trust-scenarios", actor="bench", progress=lambda _: None)
    on_time = measure(settings.warehouse_path)
    land_late(settings.landing, args.workdir / "held")
    process_pending(settings, instance, purpose="trust-scenarios", actor="bench", progress=lambda _: None)
    return {"held_back_files": held, "on_time": on_time, "after_late_data": measure(settings.warehouse_path),
            "scenarios": {**{name: {**spec, "start": spec["start"].isoformat()} for name, spec in HELD_BACK.items()},
                          "short_drop": short, "redelivery": redelivered}}


def run_weekends(settings, instance, args) -> dict:
    from crowd_platform.runner.orchestration import process_pending
    from crowd_platform.simulator import simulate

    for first, crowds in ((WEEKEND_SATURDAY, []), (WEEKEND_SUNDAY, weekend_crowds(args.subscribers))):
        simulate(settings.home, start=first, days=WEEKENDS, subscribers=args.subscribers, seed=args.seed, hours=HOURS,
                 gatherings=crowds, day_step=7)
    summary = process_pending(settings, instance, purpose="trust-scenarios", actor="bench", progress=lambda _: None)
    if not summary.ok:
        raise SystemExit("FAILED runs: " + "; ".join(summary.failed_runs))
    return {"weekends": measure_weekends(settings, os.environ["CROWD_ALERT_RULES"]), **measure(settings.warehouse_path)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "crowd_trust_scenarios")
    parser.add_argument("--label", default="current")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
    parser.add_argument("--weekends", action="store_true", help="five weekends, the last judged against its own history")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    home = args.workdir / "home"
    os.environ["CROWD_HOME"] = str(home)  # before any crowd_platform import: the definitions read it
    os.environ["DAGSTER_HOME"] = str(args.workdir / "dagster_home")
    os.environ["CROWD_ALERT_RULES"] = "config/alert_rules_sampled.yaml"
    (args.workdir / "dagster_home").mkdir(parents=True)
    sys.path.insert(0, str(PROJECT))
    from crowd_platform.common.settings import get_settings
    from crowd_platform.runner.instance import get_instance

    settings = get_settings(home)
    settings.ensure_dirs()
    began = time.monotonic()
    instance = get_instance(settings)
    measured = run_weekends(settings, instance, args) if args.weekends else run_week(settings, instance, args)
    label = args.label + (":weekends" if args.weekends else "")
    result = {"label": label, "seed": args.seed, "subscribers": args.subscribers,
              "elapsed_s": round(time.monotonic() - began), **measured}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing[label] = result
    RESULTS.write_text(json.dumps(existing, indent=1, default=str) + "\n")
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
