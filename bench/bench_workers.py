"""Throughput with 1, 2 and 4 parallel run workers on one PostgreSQL Dagster instance.

A simulated day (five operators, each in its own drop layout) is processed once per worker
count on a fresh copy of the same landing: the cell lists and the day's baseline first
(untimed), then the day's windows split into N contiguous ranges, each range one `window_job`
run in its own OS process (`dg.execute_job`, the multiprocess executor: one process per step,
as a run worker pod would execute it), all started together. The warehouse pool (limit 1)
serialises the short warehouse steps; `operator_drops` and `bts_presence` compute outside it
(decision 018). Every configuration must end with the same drops, presence and density rows as
the single worker; the script fails otherwise.

    source deploy/start-postgres.sh            # CROWD_BENCH_PG_DSN, loopback only
    .venv/bin/python bench/bench_workers.py [--workers 1 2 4] [--subscribers 100000] [--hours 3-7]

Results: bench/results/workers.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "workers.json"
DAY = date(2020, 3, 24)  # a Tuesday
WINDOW_ASSETS = ("operator_drops", "staged_events", "bts_presence", "district_density", "crowd_alerts", "broadcast_requests")
COMPARED = {
    "drops": "SELECT operator, feed, window_start, delivery, sha256, status FROM drops ORDER BY ALL",
    "presence": "SELECT window_start, operator, place_level, place_id, subscribers FROM bts_presence ORDER BY ALL",
    "density": "SELECT window_start, level, district_code, round(people_estimate, 6) FROM district_density ORDER BY ALL",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def worker(tags_json: str) -> int:
    """One window_job run (a range of windows) in this process, on DAGSTER_HOME's instance."""
    import dagster as dg

    from crowd_platform.runner.orchestration import window_job_definition

    tags = {**json.loads(tags_json), "crowd/purpose": "bench-workers", "crowd/actor": "bench:workers"}
    with dg.DagsterInstance.get() as instance:
        with dg.execute_job(dg.reconstructable(window_job_definition), instance=instance, tags=tags,
                            asset_selection=[dg.AssetKey(key) for key in WINDOW_ASSETS]) as result:
            return 0 if result.success else 1


def _instance_home(folder: Path, dsn: str) -> tuple[Path, str]:
    """A Dagster home on a fresh PostgreSQL database, with the production instance file's pools."""
    import psycopg2
    import yaml

    database = f"crowd_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {database}")
    admin.close()
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    base, _, _ = dsn.rpartition("/")
    config["storage"] = {"postgres": {"postgres_url": f"{base}/{database}".replace("postgresql://", "postgresql+psycopg2://", 1)}}
    config.pop("run_coordinator", None)  # runs are executed directly here, not by a daemon
    folder.mkdir(parents=True)
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config))
    return folder, database


def _drop_database(dsn: str, database: str) -> None:
    import psycopg2

    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    admin.close()


def _rows(home: Path) -> dict[str, list]:
    import duckdb

    connection = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return {name: connection.execute(sql).fetchall() for name, sql in COMPARED.items()}
    finally:
        connection.close()


def _ranges(keys: list[str], parts: int) -> list[tuple[str, str]]:
    size = -(-len(keys) // parts)
    return [(keys[i], keys[min(i + size, len(keys)) - 1]) for i in range(0, len(keys), size)]


def run_configuration(pristine: Path, workdir: Path, workers: int, window_keys: list[str], dsn: str) -> dict:
    import dagster as dg

    home = workdir / f"home_{workers}"
    shutil.copytree(pristine, home)
    dagster_home, database = _instance_home(workdir / f"dagster_{workers}", dsn)
    env = {**os.environ, "CROWD_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    try:
        # Untimed: cell lists (geography_job on the first window) and the day's baseline.
        setup = subprocess.run([sys.executable, __file__, "--setup", window_keys[0], DAY.isoformat()], env=env,
                               capture_output=True, text=True)
        if setup.returncode != 0:
            raise RuntimeError(f"set-up failed: {setup.stdout[-1500:]}{setup.stderr[-1500:]}")
        from crowd_platform.common.partitions import range_tags

        launches = [range_tags(first, last) for first, last in _ranges(window_keys, workers)]
        started = time.perf_counter()
        processes = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(tags)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for tags in launches]
        outputs = [process.communicate()[0].decode(errors="replace") for process in processes]
        wall = time.perf_counter() - started
        failed = [output[-1500:] for process, output in zip(processes, outputs) if process.returncode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} worker(s) failed: {failed[0]}")
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        try:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"crowd/purpose": "bench-workers"}))
            steps: dict[str, float] = {}
            for run in runs:
                for stat in instance.get_run_step_stats(run.run_id):
                    if stat.start_time and stat.end_time:
                        steps[stat.step_key] = steps.get(stat.step_key, 0.0) + (stat.end_time - stat.start_time)
        finally:
            instance.dispose()
        return {"workers": workers, "runs": len(launches), "wall_s": round(wall, 2),
                "windows_per_minute": round(len(window_keys) / wall * 60, 2),
                "step_seconds_summed_over_runs": {key: round(value, 1) for key, value in sorted(steps.items())},
                "load_average_after": [round(value, 2) for value in os.getloadavg()],
                "rows": _rows(home)}
    finally:
        _drop_database(dsn, database)


def setup(first_window: str, day: str) -> int:
    """Untimed part of a configuration: the cell lists, then the day's baseline."""
    import dagster as dg

    from crowd_platform.definitions import defs

    with dg.DagsterInstance.get() as instance:
        if not defs.resolve_job_def("geography_job").execute_in_process(instance=instance, partition_key=first_window).success:
            return 1
        baseline = defs.resolve_job_def("daily_job").execute_in_process(
            instance=instance, partition_key=day, asset_selection=[dg.AssetKey("density_baseline")])
        return 0 if baseline.success else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--hours", default="3-7", help="UTC hours FROM-TO of the simulated day")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--setup", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    if args.setup:
        return setup(*args.setup)
    dsn = os.environ.get("CROWD_BENCH_PG_DSN")
    if not dsn:
        raise SystemExit("CROWD_BENCH_PG_DSN is not set: source deploy/start-postgres.sh first")
    hours = tuple(int(part) for part in args.hours.split("-"))
    workdir = Path(tempfile.mkdtemp(prefix="bench_workers_"))
    try:
        pristine = workdir / "pristine"
        os.environ["CROWD_HOME"] = str(pristine)
        from crowd_platform.common.partitions import window_key
        from crowd_platform.common.settings import get_settings
        from crowd_platform.simulator import simulate

        get_settings(pristine).ensure_dirs()
        log(f"simulating {DAY} hours {hours[0]:02d}-{hours[1]:02d} UTC, {args.subscribers:,} subscribers")
        simulated = simulate(pristine, start=DAY, days=1, subscribers=args.subscribers, seed=5, hours=hours, gatherings=[])
        first = datetime(DAY.year, DAY.month, DAY.day, hours[0], tzinfo=timezone.utc)
        window_keys = [window_key(first + timedelta(minutes=15 * index)) for index in range(4 * (hours[1] - hours[0]))]
        results = []
        reference = None
        for workers in args.workers:
            log(f"{workers} worker(s): {len(window_keys)} windows in {min(workers, len(window_keys))} run(s)")
            result = run_configuration(pristine, workdir, workers, window_keys, dsn)
            rows = result.pop("rows")
            if reference is None:
                reference = rows
            result["equal_to_first_configuration"] = rows == reference
            if rows != reference:
                raise SystemExit(f"{workers} workers: results differ from {args.workers[0]} worker(s)")
            log(f"  wall {result['wall_s']} s, {result['windows_per_minute']} windows/min")
            results.append(result)
        report = {
            "benchmark": "window_job throughput with N parallel run workers (multiprocess executor, PostgreSQL instance)",
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            "day": DAY.isoformat(), "hours_utc": list(hours), "windows": len(window_keys),
            "subscribers": args.subscribers, "events": simulated["total_events"],
            "drops": sum(simulated["drops"].values()),
            "configurations": results,
        }
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
