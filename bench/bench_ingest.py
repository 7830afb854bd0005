"""Ingest bench: ingest + validate one big operator drop vs plain DuckDB CSV -> Parquet.

Builds a Telkomsel-layout drop (CSV, ';', gzip, Jakarta local time) of --rows rows, then, each
in its own subprocess so peak memory (ru_maxrss) is per measurement:
  plain     DuckDB read_csv -> Parquet on the same file (the floor)
  ingest    the platform path: sha256, raw copy, gzip-bomb check, parse per contract into
            staging Parquet, every contract rule in DuckDB, drops/check_results rows, publish
  ingest_one_pass / ingest_two_pass  the platform path with ingest.ONE_PASS_STAGING forced on
            (the drop parsed once into a temp table; staging Parquet written from it, the rules
            run over it) or off (staging written, then read back by the rules); `ingest` runs
            the module's default (off, see ingest.py)
  ingest_before  the same platform path with the code of a git ref (--before-ref, default HEAD,
            extracted read-only with `git archive`): before/after in the same run
  duckdb_rules   the compiled rules alone over the published Parquet
  gx        the same rules as a GX 1.x suite on a pandas frame of the staged Parquet
            (skipped above --gx-max-rows: it does not scale, see docs/decisions/001)
  write_results  check_results rows of one drop: one INSERT per row vs one multi-row INSERT
With --rounds N, plain / ingest / ingest_before alternate N times (contention hits all alike);
`seconds` is the fastest round, `seconds_runs` all of them. Writes bench/results/ingest.json.

    .venv/bin/python bench/bench_ingest.py --rows 1000000
    .venv/bin/python bench/bench_ingest.py --rows 5000000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# ingest_before runs the package extracted from --before-ref (CROWD_BENCH_CODE_ROOT) instead.
CODE_ROOT = Path(os.environ.get("CROWD_BENCH_CODE_ROOT") or PROJECT)
WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)


def build_drop(home: Path, rows: int) -> tuple[Path, Path]:
    """Write a valid Telkomsel drop with DuckDB (fast at 10 M rows) plus its manifest."""
    import duckdb

    from crowd_platform.common.contracts import contract_for
    from crowd_platform.common.settings import get_settings
    from crowd_platform.simulator.drops import build_manifest

    settings = get_settings(home)
    settings.ensure_dirs()
    contract = contract_for(settings.contracts_dir, "telkomsel", "events")
    folder = settings.landing / "telkomsel"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"telkomsel_events_{WINDOW:%Y%m%dT%H%MZ}.csv.gz"
    data = folder / name
    subscribers = max(rows // 4, 1)
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        # Unique (subscriber, cell, time, type) rows; times inside the window in Jakarta local time.
        con.execute(f"""
            COPY (
              SELECT sha256(CAST(i % {subscribers} AS VARCHAR)) AS msisdn_hash,
                     '510-10-' || (41000 + (i // {subscribers}) % 50) || '-' || (100000 + (i * 7919) % 5000) AS cell_global_id,
                     strftime(TIMESTAMP '2020-03-31 08:00:00' + to_microseconds(CAST((i * 104729) % 900000000 AS BIGINT)) , '%Y-%m-%d %H:%M:%S') AS event_ts,
                     ['call','sms','data','location_update'][1 + (i % 4)] AS event_kind
              FROM range({rows}) t(i)
            ) TO '{data}' (FORMAT csv, DELIMITER ';', HEADER true, COMPRESSION gzip)""")
    payload_sha = __import__("hashlib").sha256(data.read_bytes()).hexdigest()
    manifest = build_manifest(contract=contract, operator="telkomsel", feed="events", file_name=name, payload=b"",
                              row_count=rows, window_start=WINDOW, window_end=WINDOW + timedelta(minutes=15),
                              delivery=1, key_id=f"bench-{WINDOW:%Y%m%d}", created_at=WINDOW + timedelta(minutes=16))
    manifest.update(sha256=payload_sha, bytes=data.stat().st_size)
    manifest_path = folder / (name + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest))
    return data, manifest_path


def extract_ref(ref: str, target: Path) -> Path:
    """The package, SQL, config and contracts of git ``ref`` under ``target`` (read-only `git archive`)."""
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(PROJECT), "archive", ref, "crowd_platform", "sql", "config", "data_contracts"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def _measure(mode: str, home: Path, data: Path, env: dict | None = None) -> dict:
    """Run one measurement in a child process; return its timing and peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--child", mode, "--home", str(home), "--data", str(data)],
                               stdout=subprocess.PIPE, text=True, cwd=PROJECT, env=env)
    _pid, status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read()
    process.stdout.close()
    if status != 0:
        raise SystemExit(f"{mode} failed (status {status})")
    result = json.loads(output.strip().splitlines()[-1])
    result["wall_s_process"] = round(time.perf_counter() - started, 2)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return result


def child(mode: str, home: Path, data: Path) -> dict:
    import duckdb

    from crowd_platform.common.settings import get_settings

    settings = get_settings(home)
    if mode == "plain":
        target = home / "plain.parquet"
        started = time.perf_counter()
        with duckdb.connect() as con:
            con.execute("SET enable_progress_bar = false")
            con.execute(f"COPY (SELECT * FROM read_csv('{data}', delim=';', header=true)) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
        return {"mode": mode, "seconds": round(time.perf_counter() - started, 2)}
    if mode in ("ingest", "ingest_one_pass", "ingest_two_pass", "ingest_before"):
        from crowd_platform.ingestion.landing import scan_landing
        from crowd_platform.ingestion.ingest import ingest_drop
        from crowd_platform.ingestion.publish import publish_window
        from crowd_platform.common.warehouse import connect

        if mode in ("ingest_one_pass", "ingest_two_pass"):
            from crowd_platform.ingestion import ingest as ingest_module

            # one pass: parse into a temp table that staging and the rules read; two: write
            # staging, then the rules scan it again. "ingest" is the module's default.
            ingest_module.ONE_PASS_STAGING = mode == "ingest_one_pass"
        _restore_landing(home)
        started = time.perf_counter()
        scan = scan_landing(settings.landing, settings.contracts_dir)
        (drop,) = scan.routable
        with connect(settings.warehouse_path) as con:
            outcome = ingest_drop(settings, con, settings.landing / drop.operator_dir, drop.manifest_name, drop.manifest, run_id="bench")
            validated = time.perf_counter()
            published = publish_window(settings, con, WINDOW, WINDOW + timedelta(minutes=15), "bench")
            engines = [row[0] for row in con.execute("SELECT DISTINCT engine FROM check_results").fetchall()]
            rules = con.execute("SELECT count(DISTINCT rule) FROM check_results WHERE engine = 'duckdb'").fetchone()[0]
        import crowd_platform

        return {"mode": mode, "code": str(Path(crowd_platform.__file__).resolve().parents[1]),
                "seconds": round(time.perf_counter() - started, 2), "seconds_to_validated": round(validated - started, 2),
                "status": published[0].status if published else outcome.status, "reason": outcome.reason, "engines": sorted(engines),
                "duckdb_rules": rules}
    if mode == "write_results":
        return _write_results_bench(home)
    if mode in ("gx", "duckdb_rules"):
        from crowd_platform.common.contracts import contract_for
        from crowd_platform.ingestion.rules import RuleContext, compile_rules, run_duckdb_rules, run_gx_rules

        contract = contract_for(settings.contracts_dir, "telkomsel", "events")
        lake = next(settings.events_lake.rglob("*.parquet"))
        with duckdb.connect() as con:
            con.execute("SET enable_progress_bar = false")
            rows = con.execute(f"SELECT count(*) FROM read_parquet('{lake}')").fetchone()[0]
            context = RuleContext(WINDOW, WINDOW + timedelta(minutes=15), rows, "telkomsel")
            specs = [spec for spec in compile_rules(contract) if spec.kind != "unknown_cell_share"]
            started = time.perf_counter()
            if mode == "gx":
                import pyarrow.parquet as pq

                frame = pq.read_table(lake).to_pandas()
                loaded = time.perf_counter()
                results = run_gx_rules(frame, specs, context, None)
            else:
                loaded = started
                con.execute("CREATE TABLE bts_registry (cell_id VARCHAR, operator VARCHAR)")
                results = run_duckdb_rules(con, lake, specs, context)
        return {"mode": mode, "seconds": round(time.perf_counter() - started, 2), "load_s": round(loaded - started, 2),
                "rules": len(results), "all_passed": all(result.passed for result in results)}
    raise SystemExit(f"unknown mode {mode}")


def _restore_landing(home: Path) -> None:
    """Each ingest starts from the same state: a fresh warehouse and the drop back in landing
    (kept aside in pristine/ after the build; hard links are refused by ingestion, so a copy)."""
    import shutil

    from crowd_platform.common.settings import get_settings

    settings = get_settings(home)
    pristine = home / "pristine"
    for name in ("warehouse.duckdb", "warehouse.duckdb.wal"):
        (settings.warehouse_path.parent / name).unlink(missing_ok=True)
    for folder in (settings.raw, settings.staging, settings.events_lake):
        shutil.rmtree(folder, ignore_errors=True)
    settings.ensure_dirs()
    landing = settings.landing / "telkomsel"
    landing.mkdir(parents=True, exist_ok=True)
    for item in sorted(pristine.iterdir(), key=lambda path: path.name.endswith(".manifest.json")):  # manifest last
        shutil.copyfile(item, landing / item.name)


def _write_results_bench(home: Path) -> dict:
    """check_results rows of one drop (20 results, as an events drop with GX has): one INSERT per
    row (executemany, before) vs one multi-row INSERT (ingest._write_results now)."""
    import duckdb

    from crowd_platform.common.warehouse import apply_schema
    from crowd_platform.ingestion.rules import RuleResult

    results = [RuleResult(f"rule_{index}", "duckdb" if index % 2 else "gx", True, 1000, 0, [1, 2, 3] if index % 3 else [], "ok")
               for index in range(20)]
    timings: dict[str, list[float]] = {"executemany": [], "multi_row": []}
    with duckdb.connect(str(home / "write_results.duckdb")) as con:
        apply_schema(con)
        for round_number in range(30):
            for style in timings:
                drop_id = f"{style}-{round_number}"
                rows = [[drop_id, r.rule, r.engine, r.passed, r.element_count, r.unexpected_count, r.example_rows, r.details,
                         datetime.now(timezone.utc), "bench"] for r in results]
                started = time.perf_counter()
                con.execute("BEGIN")
                if style == "executemany":
                    con.executemany("INSERT INTO check_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                else:
                    con.execute("INSERT INTO check_results VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows)),
                                [value for row in rows for value in row])
                con.execute("COMMIT")
                timings[style].append(time.perf_counter() - started)
    median = {style: sorted(values)[len(values) // 2] * 1000 for style, values in timings.items()}
    return {"mode": "write_results", "results_per_drop": len(results), "ms_per_drop_executemany": round(median["executemany"], 2),
            "ms_per_drop_multi_row": round(median["multi_row"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the drop (default 10 M)")
    parser.add_argument("--gx-max-rows", type=int, default=2_000_000, help="skip the GX measurement above this size")
    parser.add_argument("--rounds", type=int, default=1, help="alternate plain / ingest / ingest_before this many times")
    parser.add_argument("--before-ref", default="HEAD", help="git ref whose code ingest_before runs")
    parser.add_argument("--modes", default="plain,ingest,ingest_one_pass,ingest_before",
                        help="timed modes, alternating per round (also: ingest_two_pass)")
    parser.add_argument("--output", type=Path, default=PROJECT / "bench" / "results" / "ingest.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(CODE_ROOT))
    if args.child:
        print(json.dumps(child(args.child, args.home, args.data)))
        return 0
    import shutil

    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as directory:
        home = Path(directory)
        print(f"building a {args.rows:,}-row telkomsel drop ...", flush=True)
        started = time.perf_counter()
        data, manifest = build_drop(home, args.rows)
        build_s = time.perf_counter() - started
        size = data.stat().st_size
        print(f"  {size / 1e6:.1f} MB gzip in {build_s:.1f}s", flush=True)
        pristine = home / "pristine"
        pristine.mkdir()
        shutil.copyfile(data, pristine / data.name)
        shutil.copyfile(manifest, pristine / manifest.name)
        environments: dict[str, dict | None] = {mode: None for mode in args.modes.split(",") if mode != "ingest_before"}
        before_commit = None
        if args.before_ref and "ingest_before" in args.modes.split(","):
            before_commit = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", args.before_ref], check=True,
                                           capture_output=True, text=True).stdout.strip()
            code = extract_ref(args.before_ref, home / "before_code")
            environments["ingest_before"] = {**os.environ, "CROWD_BENCH_CODE_ROOT": str(code)}
        all_runs: dict[str, list[dict]] = {mode: [] for mode in environments}
        for round_number in range(args.rounds):
            for mode, env in environments.items():
                print(f"round {round_number + 1}: measuring {mode} ...", flush=True)
                all_runs[mode].append(_measure(mode, home, pristine / data.name, env))
                print(f"  {all_runs[mode][-1]}", flush=True)
        runs = {}
        for mode, measured in all_runs.items():
            best = min(measured, key=lambda run: run["seconds"])
            runs[mode] = {**best, "seconds_runs": sorted(run["seconds"] for run in measured),
                          "peak_rss_mb": max(run["peak_rss_mb"] for run in measured)}
        # The rules and GX read the lake file the last ingest published.
        for mode in ("duckdb_rules", "write_results") + (("gx",) if args.rows <= args.gx_max_rows else ()):
            print(f"measuring {mode} ...", flush=True)
            runs[mode] = _measure(mode, home, pristine / data.name)
            print(f"  {runs[mode]}", flush=True)
    ratio = runs["ingest"]["seconds"] / max(runs["plain"]["seconds"], 1e-9)
    report = {
        "rows": args.rows, "file_mb": round(size / 1e6, 1), "cpu_count": os.cpu_count(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rounds": args.rounds, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "ingest_before_ref": before_commit,
        "runs": runs, "ingest_vs_plain": round(ratio, 2),
        "targets": {"ingest_vs_plain_max": 1.2, "peak_memory_mb_max": 3072},
        "meets_targets": ratio <= 1.2 and runs["ingest"]["peak_rss_mb"] < 3072,
    }
    for mode in ("ingest_one_pass", "ingest_two_pass"):
        if mode in runs:
            report[f"{mode}_vs_plain"] = round(runs[mode]["seconds"] / max(runs["plain"]["seconds"], 1e-9), 2)
    if "ingest_before" in runs:
        report["ingest_before_vs_plain"] = round(runs["ingest_before"]["seconds"] / max(runs["plain"]["seconds"], 1e-9), 2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    print(f"ingest/plain = {ratio:.2f}x (before: {report.get('ingest_before_vs_plain')}x); "
          f"peak ingest {runs['ingest']['peak_rss_mb']} MB -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
