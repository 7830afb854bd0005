"""Quiet-week scenarios with the trouble real operator feeds have, through the real pipeline.

A simulated week (Mon 30 March - Sun 5 April 2020, no public holiday, no gathering) of the
demo's sampled footing (30 000 subscribers by default, 10:00-15:00 WIB) is processed in two phases:

1. "on time": everything except what is held back:
   - outage: Telkomsel (47 % of the market) silent Thursday 11:00-12:00 WIB (4 windows);
   - partial arrival: Friday 12:00-12:30 WIB only Smartfren (5 %) on time (2 windows);
2. "after late data": the held-back drops land, and the platform processes them.

Saturday and Sunday come after weekday-only history. Nothing in the week is a crowd, so every
alert is false and every broadcast request an SMS blast to people who should not get one. The
script writes bench/results/trust_scenarios.json (counts only) and prints a table; run it on two
checkouts to compare (``--label``).

    python bench/trust_scenarios.py [--workdir DIR] [--label NAME]
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
        retracted = con.execute("SELECT count(*) FROM crowd_alerts WHERE state = 'retracted'").fetchone()[0]
        reasons = dict(con.execute(
            "SELECT coalesce(split_part(reason, ':', 1), 'evaluated'), count(*) FROM alert_evaluations GROUP BY 1"
        ).fetchall())
        districts = con.execute("SELECT count(*) FROM districts WHERE level IN ('kelurahan', 'kecamatan')").fetchone()[0]
        sites = con.execute("SELECT count(DISTINCT site_id) FROM bts_registry").fetchone()[0]
    return {
        "alerts_by_local_day": {str(day): {"district": district, "site": site} for day, district, site in per_day},
        "alerts_district": sum(row[1] for row in per_day), "alerts_site": sum(row[2] for row in per_day),
        "alerts_retracted": retracted,
        "broadcast_requests": requests.get("opened", 0) + requests.get("escalated", 0),
        "cancellation_requests": requests.get("retracted", 0),
        "windows_by_evaluation": reasons, "districts": districts, "sites": sites,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "crowd_trust_scenarios")
    parser.add_argument("--label", default="current")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS)
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
    from crowd_platform.runner.orchestration import process_pending
    from crowd_platform.simulator import simulate

    settings = get_settings(home)
    settings.ensure_dirs()
    began = time.monotonic()
    simulate(home, start=START, days=DAYS, subscribers=args.subscribers, seed=args.seed, hours=HOURS, gatherings=[])
    held = hold_back(settings.landing, args.workdir / "held")
    instance = get_instance(settings)
    process_pending(settings, instance, purpose="trust-scenarios", actor="bench", progress=lambda _: None)
    on_time = measure(settings.warehouse_path)
    land_late(settings.landing, args.workdir / "held")
    process_pending(settings, instance, purpose="trust-scenarios", actor="bench", progress=lambda _: None)
    after = measure(settings.warehouse_path)
    result = {"label": args.label, "seed": args.seed, "subscribers": args.subscribers, "held_back_files": held, "elapsed_s": round(time.monotonic() - began),
              "on_time": on_time, "after_late_data": after,
              "scenarios": {name: {**spec, "start": spec["start"].isoformat()} for name, spec in HELD_BACK.items()}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing[args.label] = result
    RESULTS.write_text(json.dumps(existing, indent=1, default=str) + "\n")
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
