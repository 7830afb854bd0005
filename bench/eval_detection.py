"""Full-scale detection evaluation: real people, real baseline, production alert rules.

One simulated subscriber per real SIM (residents x 1.25 SIMs per person) for a block of
neighbouring kecamatan of central Jakarta, every Friday for six weeks (the weekly baseline reads
the same weekday of the 4 previous weeks), a subset of the day's hours, gatherings of several
sizes on the last Friday, none before it. The drops go through the platform's own Dagster jobs
(`crowd_platform.runner.orchestration.process_pending`: the landing sensor, then one range run per
day of window_job, and daily_job for the baselines), with `config/alert_rules.yaml`. The alerts
are compared with ground_truth.json by `crowd_platform.alerts.evaluation`.

    .venv/bin/python bench/eval_detection.py --seed 1                 # simulate + process + evaluate
    .venv/bin/python bench/eval_detection.py --seed 1 --evaluate-only # re-read an existing workdir
    .venv/bin/python bench/eval_detection.py --seed 1 --realert config/alert_rules.yaml
        # recompute only the alerts of an existing workdir with a rules file (same function the
        # crowd_alerts asset calls, alerts.engine.evaluate_range), then evaluate

Results go to bench/results/detection_full_scale.json (one entry per seed and rules file).
Only aggregates are written: counts per district and window, never a subscriber-level value.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import yaml

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "bench" / "results" / "detection_full_scale.json"

# The block: three neighbouring kecamatan of Jakarta Pusat (Monas, Istiqlal, Pasar Baru, Pasar Senen).
AREA = ("Gambir", "Sawah Besar", "Senen")
SIMS_PER_PERSON = 1.25  # Indonesia: ~345 M active SIM cards (2020s, operator reports) for ~275 M people
FIRST_DAY = date(2020, 2, 21)  # a Friday; then every 7 days
WEEKS = 6  # 4 weeks of history for the first evaluated Friday, then two evaluated Fridays
HOURS_UTC = (3, 7)  # 10:00-14:00 WIB: morning and midday, when crowds and normal traffic are high
QUIET_DAY = date(2020, 3, 20)  # no gathering; baseline from the 4 Fridays before it
GATHERING_DAY = date(2020, 3, 27)
EXTRA_QUIET_DAY = date(2020, 3, 13)  # quiet too, but only 3 weeks of history (reported separately)
# --extend-quiet: two more Fridays after the gatherings, no gathering: 3 April (its 4-week baseline
# holds the gathering day) and 17 April (10 April, Good Friday, is a public holiday: it would count
# neither in baselines nor in the normal-day rate). More normal days for the false-alert rate.
EXTENSION_FIRST_DAY = date(2020, 4, 3)
EXTENSION_DAYS, EXTENSION_STEP = 2, 14

# Places in the block with their usual traffic; two time slots 1 h 30 apart, so that an alert of the
# first slot has closed and cooled down before the second (close 2 + cooldown 4 windows), and places
# of one slot are >= 2 km apart (a site alert within 1.5 km would otherwise match a neighbour).
SLOTS = (
    ((3, 15), (("Monas", 106.8272, -6.1754), ("Mangga Dua Selatan", 106.8266, -6.1380), ("RSCM Kenari", 106.8466, -6.1974))),
    ((5, 45), (("Masjid Istiqlal", 106.8313, -6.1702), ("Cideng", 106.8107, -6.1736), ("Kramat", 106.8450, -6.1830))),
)
# Participants (people; SIMs = people x SIMS_PER_PERSON). They are drawn among the nearest homes, so
# only part of them is ADDED to the kelurahan (the others would have been there anyway, at home or at
# work): the simulator records people_added per gathering, and the evaluation sizes gatherings by it.
# Measured with the first sizes (500-5 000): Monas, 5 000 participants, added ~1 565.
SIZES = (1500, 3000, 4500, 6000, 8000, 10000)
DURATIONS_MIN = (30, 45, 60)


def gatherings_for(seed: int) -> list[dict]:
    """Six gatherings on GATHERING_DAY, sizes and durations shuffled by the seed."""
    rng = np.random.default_rng([seed, 77])
    sizes = list(rng.permutation(SIZES))
    gatherings = []
    for (hour, minute), places in SLOTS:
        for name, lon, lat in places:
            people = int(sizes.pop())
            minutes = int(rng.choice(DURATIONS_MIN))
            start = datetime(GATHERING_DAY.year, GATHERING_DAY.month, GATHERING_DAY.day, hour, minute, tzinfo=timezone.utc)
            gatherings.append({
                "id": f"{name.lower().replace(' ', '-')}-{people}", "site": name, "kind": "gathering",
                "lon": lon, "lat": lat, "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end": (start + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "extra_subscribers": int(round(people * SIMS_PER_PERSON)),
            })
    return gatherings


def write_config(workdir: Path, multi_sim_factor: float = SIMS_PER_PERSON) -> Path:
    """config/platform.yaml with two changes for this run (both recorded in the results).

    - density.multi_sim_factor = SIMS_PER_PERSON: each simulated subscriber is a SIM, so people =
      SIMs / share / 1.25 (the platform default 1.0 counts SIMs as people);
    - emergency.start = 2020-02-01: partitions must cover the 4 weeks of history before March.
    """
    config = yaml.safe_load((PROJECT / "config" / "platform.yaml").read_text(encoding="utf-8"))
    config["density"]["multi_sim_factor"] = multi_sim_factor
    config["emergency"]["start"] = "2020-02-01T00:00:00Z"
    path = workdir / "platform.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    global AREA, HOURS_UTC, FIRST_DAY, QUIET_DAY, GATHERING_DAY, EXTRA_QUIET_DAY, EXTENSION_FIRST_DAY
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="default /tmp/crowd_eval_seed<SEED>")
    parser.add_argument("--evaluate-only", action="store_true", help="do not simulate or process; evaluate the workdir")
    parser.add_argument("--skip-simulate", action="store_true",
                        help="keep the workdir's landing/ and ground_truth.json (same seed), drop everything else, process")
    parser.add_argument("--with-presence-daily", action="store_true",
                        help="also compute district_presence_daily (the daily unique-visitor roll-up, not on the alert "
                             "path; 1.5-3.5 min per simulated day here)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: keep everything, process what is pending (recovery included)")
    parser.add_argument("--realert", help="rules file: recompute the alerts of the workdir with it, then evaluate")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--multi-sim-factor", type=float, default=SIMS_PER_PERSON,
                        help="density.multi_sim_factor of the run's config (default 1.25 = SIMs per person)")
    parser.add_argument("--recompute", action="store_true",
                        help="recompute district_density, density_baseline and alerts of the workdir with this "
                             "config (lib functions of the assets), then evaluate")
    parser.add_argument("--extend-quiet", action="store_true",
                        help="add the quiet Fridays 3 and 17 April 2020 to a finished workdir (same seed: "
                             "simulate, process), then evaluate false alerts over every quiet day")
    parser.add_argument("--area", default=",".join(AREA), help="kecamatan (smoke runs: a small one)")
    parser.add_argument("--hours", default=f"{HOURS_UTC[0]}-{HOURS_UTC[1]}", help="UTC hours FROM-TO")
    parser.add_argument("--saturday", action="store_true",
                        help="the same weeks one day later: Saturdays 22 Feb - 28 Mar 2020 (a weekend day judged "
                             "against the Saturdays before it; no holiday among them)")
    args = parser.parse_args(argv)
    if args.saturday:
        FIRST_DAY, QUIET_DAY, GATHERING_DAY, EXTRA_QUIET_DAY, EXTENSION_FIRST_DAY = (
            day + timedelta(days=1) for day in (FIRST_DAY, QUIET_DAY, GATHERING_DAY, EXTRA_QUIET_DAY, EXTENSION_FIRST_DAY))
    AREA = tuple(name.strip() for name in args.area.split(","))
    HOURS_UTC = tuple(int(part) for part in args.hours.split("-"))
    workdir = (args.workdir or Path(f"/tmp/crowd_eval_seed{args.seed}")).resolve()
    fresh = not args.evaluate_only and not args.realert and not args.recompute and not args.extend_quiet
    home = workdir / "home"
    if args.resume:
        args.skip_simulate = True
    elif fresh and args.skip_simulate:
        for path in home.iterdir():
            if path.name not in ("landing", "ground_truth.json"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # Settings are read when the definitions are imported: set the environment first.
    os.environ["CROWD_HOME"] = str(home)
    os.environ["CROWD_CONFIG"] = str(write_config(workdir, args.multi_sim_factor))
    os.environ.pop("CROWD_ALERT_RULES", None)
    rules_file = args.realert or "config/alert_rules.yaml"
    if args.realert:
        os.environ["CROWD_ALERT_RULES"] = args.realert

    from crowd_platform.common.settings import get_settings

    settings = get_settings(home)
    timings: dict[str, float] = {}
    info: dict = {}
    if fresh and not args.skip_simulate:
        from crowd_platform.simulator import simulate

        settings.ensure_dirs()
        began = time.monotonic()
        print(f"simulating {WEEKS} {FIRST_DAY:%A}s from {FIRST_DAY}, UTC hours {HOURS_UTC}, area {', '.join(AREA)}", flush=True)
        simulated = simulate(home, start=FIRST_DAY, days=WEEKS, subscribers=1, seed=args.seed, hours=HOURS_UTC,
                             gatherings=gatherings_for(args.seed), area=list(AREA), sims_per_person=SIMS_PER_PERSON,
                             day_step=7, progress=True)
        timings["simulate_s"] = round(time.monotonic() - began, 1)
        info["events"] = simulated["total_events"]
        info["windows"] = simulated["windows"]
        print(f"  {simulated['total_events']:,} events in {timings['simulate_s']} s", flush=True)
    if fresh:
        settings.ensure_dirs()
        from crowd_platform.runner.instance import get_instance
        from crowd_platform.runner.orchestration import process_pending

        began = time.monotonic()
        summary = process_pending(settings, get_instance(settings), purpose=settings.purpose, actor="bench:eval_detection",
                                  with_presence_daily=args.with_presence_daily)
        timings["process_s"] = round(time.monotonic() - began, 1)
        info["dagster_runs"] = summary.runs
        if not summary.ok:
            print("FAILED runs: " + "; ".join(summary.failed_runs), file=sys.stderr)
            return 1
    if args.extend_quiet:
        timings.update(extend_quiet(settings, args.seed, args.with_presence_daily))
    if args.recompute:
        began = time.monotonic()
        recompute_density(settings)
        timings["recompute_density_s"] = round(time.monotonic() - began, 1)
    if args.realert or args.recompute:
        began = time.monotonic()
        realert(settings, rules_file)
        timings["realert_s"] = round(time.monotonic() - began, 1)

    report = evaluate_workdir(settings, rules_file)
    report.update({"seed": args.seed, "rules_file": rules_file, "timings": timings, "peak_rss_mb_this_process": peak_rss_mb(),
                   "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info})
    results = json.loads(args.output.read_text()) if args.output.exists() else {"runs": {}}
    key = f"seed{args.seed}:{Path(rules_file).name}:multi_sim_factor={args.multi_sim_factor:g}"
    if args.saturday:
        key += ":saturdays"
    report["multi_sim_factor"] = args.multi_sim_factor
    previous = results["runs"].get(key, {})
    for kept in ("timings", "events", "windows", "dagster_runs"):  # an evaluate-only pass keeps the run's figures
        if not report.get(kept) and previous.get(kept):
            report[kept] = previous[kept]
    results["runs"][key] = report
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(json.dumps({k: report[k] for k in ("setup", "main", "timings")}, indent=1, default=str))
    print(f"written to {args.output} under {key}")
    return 0


def extend_quiet(settings, seed: int, with_presence_daily: bool) -> dict[str, float]:
    """Simulate and process the extension Fridays into a finished workdir; the ground truth stays 27 March's."""
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import process_pending
    from crowd_platform.simulator import simulate

    truth_path = settings.home / "ground_truth.json"
    truth = truth_path.read_bytes()
    began = time.monotonic()
    print(f"extending with {EXTENSION_DAYS} quiet Fridays from {EXTENSION_FIRST_DAY}", flush=True)
    simulate(settings.home, start=EXTENSION_FIRST_DAY, days=EXTENSION_DAYS, subscribers=1, seed=seed, hours=HOURS_UTC,
             gatherings=[], area=list(AREA), sims_per_person=SIMS_PER_PERSON, day_step=EXTENSION_STEP, progress=True)
    truth_path.write_bytes(truth)  # simulate() wrote a ground truth without gatherings for these days
    simulated = time.monotonic() - began
    began = time.monotonic()
    summary = process_pending(settings, get_instance(settings), purpose=settings.purpose, actor="bench:eval_detection",
                              with_presence_daily=with_presence_daily)
    if not summary.ok:
        raise SystemExit("FAILED runs: " + "; ".join(summary.failed_runs))
    return {"extend_simulate_s": round(simulated, 1), "extend_process_s": round(time.monotonic() - began, 1)}


def recompute_density(settings) -> None:
    """district_density then density_baseline for every simulated day, with the run's config."""
    from crowd_platform.density.baseline import compute_density_baseline
    from crowd_platform.density.districts import compute_district_density
    from crowd_platform.common import warehouse

    with warehouse.connect(settings.warehouse_path) as con:
        days = sorted({row[0] for row in con.execute(
            "SELECT DISTINCT CAST(timezone('UTC', window_start) AS DATE) FROM district_density").fetchall()})
        for day in days:
            start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            compute_district_density(con, settings, start, start + timedelta(days=1), None)
        for day in days:
            start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            compute_density_baseline(con, settings, start, start + timedelta(days=1), None)


def realert(settings, rules_file: str) -> None:
    """crowd_alerts again for every evaluated day, in order, with another rules file."""
    from crowd_platform.common import warehouse
    from crowd_platform.alerts.engine import evaluate_range
    from crowd_platform.alerts.rules import load_rules
    from crowd_platform.common.provenance import code_version

    rules = load_rules(settings.project_path(rules_file))
    with warehouse.connect(settings.warehouse_path) as con:
        days = sorted({row[0] for row in con.execute(
            "SELECT DISTINCT CAST(timezone('UTC', window_start) AS DATE) FROM district_density").fetchall()})
        for table in ("alert_place_state", "alert_transitions", "alert_evaluations", "crowd_alerts"):
            con.execute(f"DELETE FROM {table}")
        for day in days:
            start = datetime(day.year, day.month, day.day, HOURS_UTC[0], tzinfo=timezone.utc)
            end = datetime(day.year, day.month, day.day, HOURS_UTC[1], tzinfo=timezone.utc)
            evaluate_range(con, settings, rules, start, end, run_id=None, code_version=code_version())


def _diagnose(con, gatherings: list[dict], alerts, matched: set[str], rules) -> dict:
    """Why a gathering was (not) seen and what the false alerts are: district aggregates only."""
    from crowd_platform.alerts.rules import Observation, score
    from crowd_platform.common.timeutil import parse_utc

    per_gathering = []
    for gathering in gatherings:
        start = parse_utc(gathering["start"])
        end = parse_utc(gathering["end"])
        # The gathering's window with the largest excess in its kelurahan, scored with the rules' floors.
        row = con.execute(
            "SELECT d.people_estimate, b.median, b.mad "
            "FROM district_density d JOIN density_baseline b ON b.level = d.level AND b.place_id = d.district_code "
            "AND b.day = CAST(timezone('UTC', d.window_start) AS DATE) "
            "AND b.time_of_day = CAST(((epoch(d.window_start)::BIGINT + 7 * 3600) % 86400) // 60 AS INTEGER) "
            "WHERE d.level = 'kelurahan' AND d.district_code = ? AND d.window_start >= ? AND d.window_start < ? "
            "ORDER BY d.people_estimate - b.median DESC LIMIT 1",
            [gathering["kelurahan_code"], start, end]).fetchone()
        entry = {"id": gathering["id"], "kelurahan": gathering["kelurahan_name"], "kecamatan": gathering["kecamatan_name"],
                 "people": gathering["people_equivalent"], "people_added": gathering.get("people_added")}
        if row is not None:
            scored = score(Observation(observed=row[0], median=row[1], mad=row[2]), "kelurahan", rules)
            entry.update({"kelurahan_max_excess_people": round(scored.excess),
                          "kelurahan_baseline_median_people": round(scored.median),
                          "kelurahan_baseline_mad_people": round(scored.mad),
                          "kelurahan_max_ratio": round(scored.ratio, 3), "kelurahan_max_robust_z": round(scored.robust_z, 2),
                          "kelurahan_condition_met": scored.condition})
        per_gathering.append(entry)
    names = dict(con.execute("SELECT district_code, name FROM districts").fetchall())
    false = []
    for alert in alerts:
        if alert.alert_id in matched:
            continue
        evidence = con.execute("SELECT ratio, robust_z, excess_people, baseline_median FROM crowd_alerts WHERE alert_id = ?",
                               [alert.alert_id]).fetchone()
        entry = {"level": alert.level, "place": names.get(alert.place_id, "site" if alert.level == "site" else alert.place_id),
                 "opened_window": alert.opened_window.isoformat(),
                 "ratio": round(evidence[0], 2), "robust_z": round(evidence[1], 1)}
        if alert.level != "site":  # district aggregates (thousands of people), never a site count
            entry.update({"excess_people": round(evidence[2]), "baseline_median_people": round(evidence[3])})
        false.append(entry)
    return {"gatherings": per_gathering, "unmatched_alerts": false}


def evaluate_workdir(settings, rules_file: str) -> dict:
    from crowd_platform.alerts.evaluation import evaluate, load_inputs
    from crowd_platform.common import warehouse
    from crowd_platform.alerts.rules import load_rules

    truth = json.loads((settings.home / "ground_truth.json").read_text())
    gatherings = truth["gatherings"]
    rules = load_rules(settings.project_path(rules_file))
    out = {"setup": {
        "area": truth.get("area"), "simulated_subscribers": truth["subscribers"], "sims_per_person": SIMS_PER_PERSON,
        "days": [(FIRST_DAY + timedelta(days=7 * n)).isoformat() for n in range(WEEKS)], "hours_utc": list(HOURS_UTC),
        "hours_local": f"{HOURS_UTC[0] + 7:02d}:00-{HOURS_UTC[1] + 7:02d}:00 WIB", "gathering_day": GATHERING_DAY.isoformat(),
        "quiet_days": [QUIET_DAY.isoformat()], "extra_quiet_day_3_week_baseline": EXTRA_QUIET_DAY.isoformat(),
        "gatherings": [{k: g.get(k) for k in ("id", "kelurahan_name", "kecamatan_name", "start", "end", "people_equivalent",
                                              "people_added")}
                       for g in gatherings],
        "rules": rules.as_dict(), "config_changes": {"density.multi_sim_factor": SIMS_PER_PERSON,
                                                     "emergency.start": "2020-02-01T00:00:00Z"},
    }}
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        for label, days in (("main", {QUIET_DAY, GATHERING_DAY}), ("with_3_week_quiet_day", {EXTRA_QUIET_DAY, QUIET_DAY, GATHERING_DAY}),
                            ("quiet_day_only", {QUIET_DAY})):
            inputs = load_inputs(con, rules.levels, settings.window_minutes, days=days, area=list(AREA))
            alerts = inputs.pop("alerts")
            report = evaluate(alerts, gatherings if GATHERING_DAY in days else [], window_minutes=settings.window_minutes,
                              **inputs)
            report["days"] = sorted(day.isoformat() for day in days)
            out[label] = report
            if label == "main":
                from crowd_platform.alerts.evaluation import matches

                matched = {a.alert_id for a in alerts for g in gatherings
                           if matches(a, g, inputs["kabkota_of"], settings.window_minutes, 1500.0, 2)}
                out["diagnosis"] = _diagnose(con, gatherings, alerts, matched, rules)
        # Every evaluated day without gatherings (more of them after --extend-quiet); holidays are left
        # out of the normal-day rate by load_inputs.
        evaluated_days = {row[0] for row in con.execute(
            "SELECT DISTINCT CAST(timezone('UTC', window_start) AS DATE) FROM alert_evaluations WHERE evaluated").fetchall()}
        quiet_days = evaluated_days - {GATHERING_DAY}
        if quiet_days:
            inputs = load_inputs(con, rules.levels, settings.window_minutes, days=quiet_days, area=list(AREA))
            report = evaluate(inputs.pop("alerts"), [], window_minutes=settings.window_minutes, **inputs)
            report["days"] = sorted(day.isoformat() for day in quiet_days)
            report["holidays"] = sorted(day.isoformat() for day in inputs["holiday_dates"])
            report["district_windows_evaluated"] = round(report["false_alerts"]["normal_days"] * 96) * report["false_alerts"]["district_count"]
            out["all_quiet_days"] = report
        out["baseline_kinds"] = dict(con.execute(
            "SELECT kind || ' ' || CAST(day AS VARCHAR), count(*) FROM density_baseline GROUP BY 1 ORDER BY 1").fetchall())
    return out


if __name__ == "__main__":
    raise SystemExit(main())
