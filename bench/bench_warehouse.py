"""Benchmark: shared warehouse for several concurrent writers, DuckLake vs plain PostgreSQL.

Issue 7, item 4 ("measure before choosing"). Both engines run on the same machine in the
same run, against the same PostgreSQL server:

- ducklake: DuckLake catalog in a PostgreSQL database (`crowd_ducklake`), Parquet data files
  in a local folder (`<workdir>/ducklake_data`);
- postgres: plain PostgreSQL tables (database `crowd_pgwh`), written with psycopg2 `COPY`
  (DuckDB 2.0.1 has no postgres extension here either, so a worker would write this way).

Writers: N processes (1, 2, 4, 8), each repeatedly replacing its own 15-minute window, as
partitions processed in parallel would: one transaction = DELETE the window from
bts_presence and district_density + INSERT ~50 000 bts_presence-like and ~8 000
district_density-like rows (shapes of sql/schema/040_density.sql). Measured per engine and
N: commits/s, p50/p95 transaction latency (first attempt to successful commit, retries
included), conflicts (retried) and errors. The engines alternate per N so that load from
other work on the machine falls on both.

Reader: the density_baseline shape (sql/density_baseline.sql): median and MAD of
people_estimate per place and time of day over the same weekday of the previous 4 weeks,
scanning 28 days x 96 windows of district_density. National size (~90 000 places, ~240 M
rows) does not fit the few-minute budget on 2 shared cores: --places scales it down (the
JSON records the scale).

DuckLake needs DuckDB 1.5.5 (the `duckdb-extension-*` packages carry signed binaries for
that release only; the platform pins 2.0.1), so this script runs in its own venv:

    python3.11 -m venv /tmp/ducklake-venv
    /tmp/ducklake-venv/bin/pip install -r bench/requirements-ducklake.txt
    /tmp/ducklake-venv/bin/python bench/bench_warehouse.py                 # full run, ~3.5 min
    /tmp/ducklake-venv/bin/python bench/bench_warehouse.py --smoke         # seconds, no JSON

The extensions are loaded by path (`LOAD '<site-packages>/duckdb_extension_*/extensions/
v1.5.5/<name>.duckdb_extension'`, signature checked, autoinstall off): the packages' own
helper (`duckdb_extensions.import_extension`) is a separate package and is not needed. The
`postgres` extension must come from `duckdb-extension-postgres-scanner`: the same binary in
`duckdb-extension-postgres` is named postgres.duckdb_extension and fails to load (DuckDB
looks for the entry point `postgres_duckdb_cpp_init`; the binary exports
`postgres_scanner_...`).

PostgreSQL: --pg (default host=127.0.0.1 port=54329 user=postgres). The two databases are
dropped and created again at each run. Results: bench/results/warehouse.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import psycopg2

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "warehouse.json"

DL_DB = "crowd_ducklake"
PG_DB = "crowd_pgwh"
DAY_START = datetime(2026, 12, 1, tzinfo=timezone.utc)  # writers' day; reader's target day
OPERATORS = ["telkomsel", "indosat", "xl", "smartfren", "tri"]
MAX_ATTEMPTS = 10  # per transaction, conflicts only
RETRY_JITTER_S = 0.05  # retry after a random wait of up to 50 ms x attempt
MAX_ERRORS = 20  # per writer and phase: stop spinning on a broken setup

BP_COLS = "window_start, operator, place_level, place_id, subscribers, location_rule, run_id"
DD_COLS = ("window_start, level, district_code, subscribers, people_estimate, density_per_km2, "
           "operators_reporting, drop_ids, run_id")

DUCK_SCHEMA = """
CREATE TABLE {p}bts_presence (
    window_start TIMESTAMPTZ NOT NULL, operator VARCHAR NOT NULL, place_level VARCHAR NOT NULL,
    place_id VARCHAR NOT NULL, subscribers BIGINT NOT NULL, location_rule VARCHAR NOT NULL,
    run_id VARCHAR);
CREATE TABLE {p}district_density (
    window_start TIMESTAMPTZ NOT NULL, level VARCHAR NOT NULL, district_code VARCHAR NOT NULL,
    subscribers DOUBLE NOT NULL, people_estimate DOUBLE NOT NULL, density_per_km2 DOUBLE,
    operators_reporting INTEGER, drop_ids VARCHAR[], run_id VARCHAR);
"""
PG_SCHEMA = """
CREATE TABLE bts_presence (
    window_start TIMESTAMPTZ NOT NULL, operator TEXT NOT NULL, place_level TEXT NOT NULL,
    place_id TEXT NOT NULL, subscribers BIGINT NOT NULL, location_rule TEXT NOT NULL,
    run_id TEXT);
CREATE TABLE district_density (
    window_start TIMESTAMPTZ NOT NULL, level TEXT NOT NULL, district_code TEXT NOT NULL,
    subscribers DOUBLE PRECISION NOT NULL, people_estimate DOUBLE PRECISION NOT NULL,
    density_per_km2 DOUBLE PRECISION, operators_reporting INTEGER, drop_ids TEXT[], run_id TEXT);
CREATE INDEX bts_presence_window ON bts_presence (window_start);
CREATE INDEX district_density_window ON district_density (window_start);
"""


# --------------------------------------------------------------------------- helpers

def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM; ru_maxrss would carry the parent's peak into a
    spawned child, since Linux keeps it across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ext_path(package: str, name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{package} is not installed: pip install -r bench/requirements-ducklake.txt")
    path = Path(spec.origin).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        raise SystemExit(f"{path} missing: the extension package does not match duckdb {duckdb.__version__}")
    return str(path)


def duck_connect(threads: int = 1, memory_limit: str = "1GB") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False,
                                 "threads": threads, "memory_limit": memory_limit})
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")
    return con


def ducklake_connect(cfg: dict, threads: int = 1, memory_limit: str = "1GB",
                     read_only: bool = False) -> duckdb.DuckDBPyConnection:
    con = duck_connect(threads, memory_limit)
    con.execute(f"LOAD '{ext_path('duckdb_extension_postgres_scanner', 'postgres_scanner')}'")
    con.execute(f"LOAD '{ext_path('duckdb_extension_ducklake', 'ducklake')}'")
    opts = f"DATA_PATH '{cfg['data_path']}'" + (", READ_ONLY" if read_only else "")
    con.execute(f"ATTACH 'ducklake:postgres:{cfg['pg']} dbname={DL_DB}' AS lake ({opts})")
    return con


def pg_connect(cfg: dict, dbname: str = PG_DB):
    return psycopg2.connect(f"{cfg['pg']} dbname={dbname}")


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S+00")


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def writer_rows_sql(window: datetime, bp_rows: int, dd_rows: int, run_id: str) -> tuple[str, str]:
    """SELECTs producing one window's bts_presence and district_density rows."""
    w = ts(window)
    ops = "['" + "','".join(OPERATORS) + "']"
    bp = f"""
        SELECT TIMESTAMPTZ '{w}' AS window_start, {ops}[(i % 5) + 1] AS operator, 'site' AS place_level,
               '510-' || lpad(CAST(10 + i % 5 AS VARCHAR), 2, '0') || '-' || CAST(40000 + i // 100 AS VARCHAR)
                   || '-' || CAST(100000000 + i AS VARCHAR) AS place_id,
               CAST(hash(i, '{w}') % 5000 AS BIGINT) AS subscribers, 'last' AS location_rule,
               '{run_id}' AS run_id
        FROM range({bp_rows}) t(i)"""
    dd = f"""
        SELECT TIMESTAMPTZ '{w}' AS window_start,
               CASE WHEN i < 34 THEN 'provinsi' WHEN i < 548 THEN 'kabkota' ELSE 'kecamatan' END AS level,
               lpad(CAST(i AS VARCHAR), 7, '0') AS district_code,
               CAST(hash(i, '{w}') % 100000 AS DOUBLE) / 4 AS subscribers,
               CAST(hash(i, '{w}', 1) % 400000 AS DOUBLE) / 4 AS people_estimate,
               CAST(hash(i, '{w}', 2) % 80000 AS DOUBLE) / 8 AS density_per_km2,
               CAST(5 AS INTEGER) AS operators_reporting,
               [op || '-' || strftime(TIMESTAMPTZ '{w}', '%Y%m%dT%H%M') FOR op IN {ops}] AS drop_ids,
               '{run_id}' AS run_id
        FROM range({dd_rows}) t(i)"""
    return bp, dd


def pg_csv_select(table: str, select_sql: str) -> str:
    """The same rows as PostgreSQL COPY csv input (arrays as {a,b} literals)."""
    if table == "district_density":
        return (f"SELECT window_start, level, district_code, subscribers, people_estimate, density_per_km2, "
                f"operators_reporting, '{{' || array_to_string(drop_ids, ',') || '}}', run_id FROM ({select_sql})")
    return select_sql


def rows_to_csv_bytes(con, sql: str, scratch: Path) -> bytes:
    """DuckDB writes the CSV (TIMESTAMPTZ as '2026-12-01 00:00:00+00', which PostgreSQL reads)."""
    con.execute(f"COPY ({sql}) TO '{scratch}' (HEADER false)")
    data = scratch.read_bytes()
    scratch.unlink()
    return data


# --------------------------------------------------------------------------- writer process

def is_conflict(engine: str, exc: BaseException) -> bool:
    if engine == "postgres":
        return getattr(exc, "pgcode", None) in ("40001", "40P01")
    msg = str(exc).lower()
    return "conflict" in msg or "retry" in msg


def writer_main(engine: str, idx: int, cfg: dict, barrier, queue) -> None:
    window = DAY_START + timedelta(minutes=15 * idx)
    run_id = f"bench-{engine}-w{idx}"
    out = {"engine": engine, "writer": idx, "window": ts(window), "commits": 0, "latencies": [],
           "conflicts": 0, "errors": 0, "error_samples": [], "conflict_samples": []}
    try:
        bp_sql, dd_sql = writer_rows_sql(window, cfg["bp_rows"], cfg["dd_rows"], run_id)
        if engine == "ducklake":
            con = ducklake_connect(cfg, threads=1, memory_limit="1GB")
            con.execute(f"CREATE TEMP TABLE bp AS {bp_sql}")
            con.execute(f"CREATE TEMP TABLE dd AS {dd_sql}")

            def txn() -> None:
                con.execute("BEGIN TRANSACTION")
                con.execute("DELETE FROM lake.bts_presence WHERE window_start = ?", [window])
                con.execute("DELETE FROM lake.district_density WHERE window_start = ?", [window])
                con.execute("INSERT INTO lake.bts_presence SELECT * FROM bp")
                con.execute("INSERT INTO lake.district_density SELECT * FROM dd")
                con.execute("COMMIT")

            def rollback() -> None:
                try:
                    con.execute("ROLLBACK")
                except Exception:
                    pass
        else:
            gen = duck_connect(threads=1)
            scratch = Path(cfg["workdir"]) / f"writer{idx}.csv"
            bp_bytes = rows_to_csv_bytes(gen, pg_csv_select("bts_presence", bp_sql), scratch)
            dd_bytes = rows_to_csv_bytes(gen, pg_csv_select("district_density", dd_sql), scratch)
            gen.close()
            con = pg_connect(cfg)

            def txn() -> None:
                with con.cursor() as cur:
                    cur.execute("DELETE FROM bts_presence WHERE window_start = %s", (window,))
                    cur.execute("DELETE FROM district_density WHERE window_start = %s", (window,))
                    cur.copy_expert(f"COPY bts_presence ({BP_COLS}) FROM STDIN WITH (FORMAT csv)",
                                    io.BytesIO(bp_bytes))
                    cur.copy_expert(f"COPY district_density ({DD_COLS}) FROM STDIN WITH (FORMAT csv)",
                                    io.BytesIO(dd_bytes))
                con.commit()

            def rollback() -> None:
                try:
                    con.rollback()
                except Exception:
                    pass

        def one_transaction() -> float | None:
            start = time.monotonic()
            for _attempt in range(MAX_ATTEMPTS):
                try:
                    txn()
                    return time.monotonic() - start
                except Exception as exc:  # noqa: BLE001 - classified and counted
                    rollback()
                    if is_conflict(engine, exc):
                        out["conflicts"] += 1
                        if len(out["conflict_samples"]) < 3:
                            out["conflict_samples"].append(str(exc)[:300])
                        time.sleep(random.uniform(0, RETRY_JITTER_S * (_attempt + 1)))
                        continue
                    out["errors"] += 1
                    if len(out["error_samples"]) < 3:
                        out["error_samples"].append(str(exc)[:300])
                    return None
            out["errors"] += 1
            out["gave_up"] = out.get("gave_up", 0) + 1
            if len(out["error_samples"]) < 3:
                out["error_samples"].append(f"gave up after {MAX_ATTEMPTS} conflicting attempts")
            return None

        # Untimed: the window exists before the timed loop (the first DELETE is not a no-op).
        conflicts_before = out["conflicts"]
        one_transaction()
        out["warmup_conflicts"] = out["conflicts"] - conflicts_before
        out["conflicts"] = conflicts_before
        barrier.wait(timeout=cfg["duration"] + 120)
        t0 = time.monotonic()
        deadline = t0 + cfg["duration"]
        while time.monotonic() < deadline and out["errors"] < MAX_ERRORS:
            latency = one_transaction()
            if latency is not None:
                out["commits"] += 1
                out["latencies"].append(latency)
        out["t0"], out["t1"] = t0, time.monotonic()
        con.close()
    except Exception as exc:  # noqa: BLE001 - reported in the results
        out["errors"] += 1
        out["error_samples"].append(f"writer failed: {exc!s}"[:300])
        try:
            barrier.abort()
        except Exception:
            pass
    out["peak_rss_mb"] = peak_rss_mb()
    queue.put(out)


def run_phase(engine: str, n: int, cfg: dict) -> dict:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n)
    queue = ctx.Queue()
    procs = [ctx.Process(target=writer_main, args=(engine, i, cfg, barrier, queue)) for i in range(n)]
    started = time.monotonic()
    for p in procs:
        p.start()
    results = []
    for _ in range(n):
        try:
            results.append(queue.get(timeout=cfg["duration"] + 180))
        except Exception:
            break
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.terminate()
            p.join()
    lat = sorted(x for r in results for x in r["latencies"])
    t0s = [r["t0"] for r in results if "t0" in r]
    t1s = [r["t1"] for r in results if "t1" in r]
    elapsed = (max(t1s) - min(t0s)) if t0s and t1s else None
    commits = sum(r["commits"] for r in results)
    phase = {
        "engine": engine,
        "writers": n,
        "writers_reporting": len(results),
        "measured_s": round(elapsed, 2) if elapsed else None,
        "phase_wall_s": round(time.monotonic() - started, 2),
        "commits": commits,
        "commits_per_s": round(commits / elapsed, 3) if elapsed else None,
        "rows_per_s": round(commits * (cfg["bp_rows"] + cfg["dd_rows"]) / elapsed) if elapsed else None,
        "p50_ms": round(percentile(lat, 0.50) * 1000, 1) if lat else None,
        "p95_ms": round(percentile(lat, 0.95) * 1000, 1) if lat else None,
        "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "commits_per_writer": [r["commits"] for r in sorted(results, key=lambda r: r["writer"])],
        "conflicts": sum(r["conflicts"] for r in results),
        "warmup_conflicts": sum(r.get("warmup_conflicts", 0) for r in results),
        "errors": sum(r["errors"] for r in results),
        "gave_up_after_conflicts": sum(r.get("gave_up", 0) for r in results),
        "error_samples": [s for r in results for s in r["error_samples"]][:5],
        "conflict_samples": [s for r in results for s in r["conflict_samples"]][:3],
        "peak_rss_mb_max": round(max((r["peak_rss_mb"] for r in results), default=0)),
    }
    print(f"  {engine:8s} writers={n}: {phase['commits']} commits in {phase['measured_s']} s = "
          f"{phase['commits_per_s']}/s, p50 {phase['p50_ms']} ms, p95 {phase['p95_ms']} ms, "
          f"conflicts {phase['conflicts']}, errors {phase['errors']}", flush=True)
    for s in phase["error_samples"][:2]:
        print(f"    error: {s}", flush=True)
    for s in phase["conflict_samples"][:1]:
        print(f"    conflict: {s}", flush=True)
    return phase


# --------------------------------------------------------------------------- setup and reader

def admin(cfg: dict, sql: str) -> None:
    con = psycopg2.connect(f"{cfg['pg']} dbname=postgres")
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(sql)
    con.close()


def setup(cfg: dict) -> dict:
    timings: dict = {}
    for db in (DL_DB, PG_DB):
        admin(cfg, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin(cfg, f"CREATE DATABASE {db}")
    shutil.rmtree(cfg["data_path"], ignore_errors=True)
    Path(cfg["data_path"]).mkdir(parents=True)

    # The reader's data set: days x 96 windows x places of district_density, generated once
    # and loaded into both engines (same values: the reader's checksums must agree).
    gen = duck_connect(threads=2, memory_limit="2GB")
    t = time.monotonic()
    days, places = cfg["days"], cfg["places"]
    gen.execute(f"""
        CREATE TABLE gen_dd AS
        SELECT TIMESTAMPTZ '{ts(DAY_START)}' - to_days(CAST(d AS INTEGER)) + to_minutes(CAST(15 * w AS INTEGER)) AS window_start,
               CASE WHEN p % 100 = 0 THEN 'kabkota' ELSE 'kecamatan' END AS level,
               lpad(CAST(p AS VARCHAR), 7, '0') AS district_code,
               CAST(hash(p, d, w) % 100000 AS DOUBLE) / 4 AS subscribers,
               CAST((1000 + p % 1000) * (1 + w % 96) + hash(p, d, w, 1) % 2000 AS DOUBLE) / 4 AS people_estimate,
               CAST(hash(p, d, w, 2) % 80000 AS DOUBLE) / 8 AS density_per_km2,
               CAST(5 AS INTEGER) AS operators_reporting,
               ['telkomsel-' || CAST(d AS VARCHAR) || '-' || CAST(w AS VARCHAR),
                'indosat-' || CAST(d AS VARCHAR) || '-' || CAST(w AS VARCHAR)] AS drop_ids,
               'bench-history' AS run_id
        FROM range(1, {days} + 1) t1(d), range(96) t2(w), range({places}) t3(p)
        ORDER BY window_start, district_code""")
    n_rows = gen.execute("SELECT count(*) FROM gen_dd").fetchone()[0]
    timings["generate_s"] = round(time.monotonic() - t, 2)
    csv_path = Path(cfg["workdir"]) / "district_density_history.csv"
    gen.execute(f"COPY ({pg_csv_select('district_density', 'SELECT * FROM gen_dd')}) TO '{csv_path}' "
                "(HEADER false)")
    gen.close()

    # PostgreSQL: schema, COPY the history, index, analyze.
    t = time.monotonic()
    con = pg_connect(cfg)
    with con.cursor() as cur:
        cur.execute(PG_SCHEMA)
        with open(csv_path, "rb") as f:
            cur.copy_expert(f"COPY district_density ({DD_COLS}) FROM STDIN WITH (FORMAT csv)", f)
    con.commit()
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("VACUUM ANALYZE district_density")
    con.close()
    timings["postgres_load_s"] = round(time.monotonic() - t, 2)

    # DuckLake: schema, one commit per day of history (a compacted day: one file, not 96).
    t = time.monotonic()
    con = ducklake_connect(cfg, threads=2, memory_limit="2GB")
    con.execute(DUCK_SCHEMA.format(p="lake."))
    # Loaded from the same CSV as PostgreSQL: same values in both engines.
    con.execute(f"""CREATE TEMP TABLE hist AS SELECT window_start, level, district_code, subscribers,
                     people_estimate, density_per_km2, operators_reporting,
                     CAST(string_split(trim(drop_ids, '{{}}'), ',') AS VARCHAR[]) AS drop_ids, run_id
                     FROM read_csv('{csv_path}', header = false, columns = {{
                       'window_start': 'TIMESTAMPTZ', 'level': 'VARCHAR', 'district_code': 'VARCHAR',
                       'subscribers': 'DOUBLE', 'people_estimate': 'DOUBLE', 'density_per_km2': 'DOUBLE',
                       'operators_reporting': 'INTEGER', 'drop_ids': 'VARCHAR', 'run_id': 'VARCHAR'}})""")
    for d in range(days, 0, -1):
        lo = DAY_START - timedelta(days=d)
        con.execute("INSERT INTO lake.district_density SELECT * FROM hist "
                    "WHERE window_start >= ? AND window_start < ?", [lo, lo + timedelta(days=1)])
    con.execute("DROP TABLE hist")
    con.close()
    timings["ducklake_load_s"] = round(time.monotonic() - t, 2)
    csv_path.unlink()
    print(f"setup: {n_rows} history rows; generate {timings['generate_s']} s, PostgreSQL load "
          f"{timings['postgres_load_s']} s, DuckLake load {timings['ducklake_load_s']} s", flush=True)
    return {"history_rows": n_rows, **timings}


def reader_sql(engine: str, cfg: dict) -> str:
    day = ts(DAY_START)
    lookback = ts(DAY_START - timedelta(days=7 * cfg["weeks"]))
    if engine == "ducklake":
        return f"""
        WITH dated AS (
            SELECT level, district_code AS place_id, people_estimate AS value,
                   date_diff('day', CAST(timezone('UTC', window_start) AS DATE), DATE '{DAY_START.date()}') AS days_back,
                   hour(timezone('Asia/Jakarta', window_start)) * 60 + minute(timezone('Asia/Jakarta', window_start)) AS time_of_day
            FROM lake.district_density
            WHERE window_start >= TIMESTAMPTZ '{lookback}' AND window_start < TIMESTAMPTZ '{day}'
        ),
        stats AS (
            SELECT level, place_id, time_of_day,
                   count(*) FILTER (WHERE days_back % 7 = 0) AS n,
                   median(value) FILTER (WHERE days_back % 7 = 0) AS median,
                   mad(value) FILTER (WHERE days_back % 7 = 0) AS mad
            FROM dated GROUP BY level, place_id, time_of_day
        )
        SELECT count(*), sum(median), sum(mad) FROM stats WHERE n >= {cfg['min_obs']}"""
    return f"""
        WITH dated AS (
            SELECT level, district_code AS place_id, people_estimate AS value,
                   DATE '{DAY_START.date()}' - CAST(window_start AT TIME ZONE 'UTC' AS DATE) AS days_back,
                   CAST(extract(hour FROM window_start AT TIME ZONE 'Asia/Jakarta') * 60
                        + extract(minute FROM window_start AT TIME ZONE 'Asia/Jakarta') AS INTEGER) AS time_of_day
            FROM district_density
            WHERE window_start >= TIMESTAMPTZ '{lookback}' AND window_start < TIMESTAMPTZ '{day}'
        ),
        weekly AS (SELECT * FROM dated WHERE days_back % 7 = 0),
        med AS (
            SELECT level, place_id, time_of_day, count(*) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS median
            FROM weekly GROUP BY level, place_id, time_of_day
        ),
        mad AS (
            SELECT w.level, w.place_id, w.time_of_day,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(w.value - m.median)) AS mad
            FROM weekly AS w JOIN med AS m USING (level, place_id, time_of_day)
            GROUP BY w.level, w.place_id, w.time_of_day
        )
        SELECT count(*), sum(median), sum(mad) FROM med JOIN mad USING (level, place_id, time_of_day)
        WHERE n >= {cfg['min_obs']}"""


def run_reader(engine: str, cfg: dict) -> dict:
    runs, connect_s, result = [], [], None
    for _ in range(cfg["reader_repeats"]):
        t = time.monotonic()
        if engine == "ducklake":
            con = ducklake_connect(cfg, threads=2, memory_limit="2GB", read_only=True)
            connect_s.append(time.monotonic() - t)
            t = time.monotonic()
            result = con.execute(reader_sql(engine, cfg)).fetchone()
        else:
            con = pg_connect(cfg)
            connect_s.append(time.monotonic() - t)
            t = time.monotonic()
            with con.cursor() as cur:
                cur.execute(reader_sql(engine, cfg))
                result = cur.fetchone()
        runs.append(time.monotonic() - t)
        con.close()
    out = {"runs_s": [round(x, 3) for x in runs], "median_s": round(statistics.median(runs), 3),
           "connect_s_median": round(statistics.median(connect_s), 3),
           "groups": result[0], "sum_median": result[1], "sum_mad": result[2]}
    print(f"  reader {engine:8s}: median {out['median_s']} s over {len(runs)} runs "
          f"{out['runs_s']}, {out['groups']} groups", flush=True)
    return out


def catalog_stats(cfg: dict) -> dict:
    stats: dict = {}
    con = psycopg2.connect(f"{cfg['pg']} dbname={DL_DB}")
    with con.cursor() as cur:
        for key, sql in {
            "snapshots": "SELECT count(*) FROM ducklake_snapshot",
            "data_files_live": "SELECT count(*) FROM ducklake_data_file WHERE end_snapshot IS NULL",
            "data_files_total": "SELECT count(*) FROM ducklake_data_file",
            "delete_files_total": "SELECT count(*) FROM ducklake_delete_file",
            "catalog_db_mb": f"SELECT pg_database_size('{DL_DB}') / 1048576.0",
        }.items():
            try:
                cur.execute(sql)
                stats[key] = float(cur.fetchone()[0])
            except Exception as exc:  # noqa: BLE001
                con.rollback()
                stats[key] = f"n/a: {str(exc)[:100]}"
    con.close()
    files = [f for f in Path(cfg["data_path"]).rglob("*") if f.is_file()]
    stats["parquet_files_on_disk"] = len(files)
    stats["data_mb_on_disk"] = round(sum(f.stat().st_size for f in files) / 1048576, 1)
    con = pg_connect(cfg)
    with con.cursor() as cur:
        cur.execute(f"SELECT pg_database_size('{PG_DB}') / 1048576.0")
        stats["postgres_warehouse_db_mb"] = round(float(cur.fetchone()[0]), 1)
    con.close()
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in stats.items()}


def server_facts(cfg: dict) -> dict:
    con = psycopg2.connect(f"{cfg['pg']} dbname=postgres")
    facts = {}
    with con.cursor() as cur:
        cur.execute("SHOW server_version")
        facts["server_version"] = cur.fetchone()[0]
        for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections",
                     "max_parallel_workers_per_gather", "work_mem"):
            cur.execute(f"SHOW {name}")
            facts[name] = cur.fetchone()[0]
    con.close()
    return facts


# --------------------------------------------------------------------------- main

def summary(result: dict) -> dict:
    keys = ("commits_per_s", "p50_ms", "p95_ms", "conflicts", "errors")
    return {"generated_at": result.get("generated_at"), "machine": result.get("machine"),
            "writers": [{"engine": p["engine"], "writers": p["writers"]} | {k: p.get(k) for k in keys}
                        for p in result.get("writers", [])],
            "reader_median_s": {e: result.get("reader", {}).get(e, {}).get("median_s")
                                for e in ("ducklake", "postgres")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default="host=127.0.0.1 port=54329 user=postgres")
    ap.add_argument("--workdir", default="/tmp/bench_warehouse")
    ap.add_argument("--writers", default="1,2,4,8")
    ap.add_argument("--duration", type=float, default=12.0, help="timed seconds per engine and N")
    ap.add_argument("--bp-rows", type=int, default=50_000)
    ap.add_argument("--dd-rows", type=int, default=8_000)
    ap.add_argument("--places", type=int, default=1_000, help="reader history: places (national ~90 000)")
    ap.add_argument("--weeks", type=int, default=4)
    ap.add_argument("--min-obs", type=int, default=3)
    ap.add_argument("--reader-repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds, no JSON written")
    args = ap.parse_args()
    if args.smoke:
        args.writers, args.duration, args.bp_rows, args.dd_rows, args.places = "1,2", 2.0, 2000, 300, 20
        args.reader_repeats = 1
    cfg = {"pg": args.pg, "workdir": args.workdir, "data_path": str(Path(args.workdir) / "ducklake_data"),
           "duration": args.duration, "bp_rows": args.bp_rows, "dd_rows": args.dd_rows,
           "places": args.places, "days": 7 * args.weeks, "weeks": args.weeks, "min_obs": args.min_obs,
           "reader_repeats": args.reader_repeats}
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()
    print(f"bench_warehouse: duckdb {duckdb.__version__}, psycopg2 {psycopg2.__version__}, "
          f"load average {load_before[0]:.1f}", flush=True)

    result: dict = {
        "benchmark": "shared warehouse for concurrent writers: DuckLake (PostgreSQL catalog) vs PostgreSQL",
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "loadavg_1m_before": round(load_before[0], 2)},
        "versions": {"duckdb": duckdb.__version__, "psycopg2": psycopg2.__version__.split()[0]},
        "postgres_server": server_facts(cfg),
        "params": {k: v for k, v in cfg.items() if k not in ("pg", "workdir", "data_path")}
        | {"national_places": 90_000, "scale_vs_national": round(args.places / 90_000, 4),
           "windows_per_day": 96, "max_attempts_per_txn": MAX_ATTEMPTS,
           "retry_jitter_s_per_attempt": RETRY_JITTER_S,
           "ducklake_data_path": "local folder (no object storage)",
           "latency": "first attempt to successful commit, retries included (DELETE+DELETE+INSERT+INSERT+COMMIT)"},
    }
    con = duck_connect()  # extension versions, from a scratch in-memory connection
    con.execute(f"LOAD '{ext_path('duckdb_extension_postgres_scanner', 'postgres_scanner')}'")
    con.execute(f"LOAD '{ext_path('duckdb_extension_ducklake', 'ducklake')}'")
    for name, ver in con.execute("SELECT extension_name, extension_version FROM duckdb_extensions() "
                                 "WHERE extension_name IN ('ducklake', 'postgres_scanner')").fetchall():
        result["versions"][f"{name}_extension"] = ver
    result["versions"]["ducklake_settings"] = dict(con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name LIKE 'ducklake_%'").fetchall())
    con.close()

    result["setup"] = setup(cfg)
    con = ducklake_connect(cfg)
    result["versions"]["ducklake_format"] = con.execute(
        "SELECT value FROM lake.options() WHERE option_name = 'version'").fetchone()[0]
    con.close()

    result["writers"] = []
    for n in [int(x) for x in args.writers.split(",")]:
        for engine in ("ducklake", "postgres"):
            result["writers"].append(run_phase(engine, n, cfg))

    result["reader"] = {e: run_reader(e, cfg) for e in ("ducklake", "postgres")}
    dl, pg = result["reader"]["ducklake"], result["reader"]["postgres"]
    result["reader"]["results_agree"] = (dl["groups"] == pg["groups"]
                                         and abs(dl["sum_median"] - pg["sum_median"]) < 1e-6 * max(1, abs(pg["sum_median"]))
                                         and abs(dl["sum_mad"] - pg["sum_mad"]) < 1e-6 * max(1, abs(pg["sum_mad"])))
    result["reader"]["history_rows"] = result["setup"]["history_rows"]
    result["storage_after"] = catalog_stats(cfg)
    result["machine"]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    result["machine"]["main_peak_rss_mb"] = round(peak_rss_mb())
    result["wall_s"] = round(time.monotonic() - started, 1)

    print("\n| engine | writers | commits/s | p50 ms | p95 ms | commits | conflicts | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for p in result["writers"]:
        print(f"| {p['engine']} | {p['writers']} | {p['commits_per_s']} | {p['p50_ms']} | {p['p95_ms']} | "
              f"{p['commits']} | {p['conflicts']} | {p['errors']} |")
    print(f"\nreader: DuckLake {dl['median_s']} s, PostgreSQL {pg['median_s']} s over "
          f"{result['setup']['history_rows']} rows; agree: {result['reader']['results_agree']}")
    print(f"storage after: {result['storage_after']}")
    print(f"wall {result['wall_s']} s, load average {load_before[0]:.1f} -> {result['machine']['loadavg_1m_after']}")
    if args.smoke:
        print("smoke: no JSON written")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.exists():  # keep the earlier runs' headline figures (run-to-run spread)
            prev = json.loads(args.out.read_text())
            result["previous_runs"] = prev.get("previous_runs", []) + [summary(prev)]
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    shutil.rmtree(cfg["data_path"], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
