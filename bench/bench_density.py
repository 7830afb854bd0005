"""Density benchmark: one 15-minute window of N events from 4 operators.

Compares, on the same data in the same run (each variant in its own process, so peak memory
is that variant's own):
  platform         compute_bts_presence + compute_district_density (what the assets run)
  platform_before  the same, with the code and SQL of a git ref (--before-ref, default HEAD),
                   extracted read-only with `git archive`: before/after in the same run
  handwritten      the best single hand-written DuckDB query for the same district numbers
                   (read_parquet of the file list, each event's file name joined to drops)
  filescan         hand-written DuckDB, each lake file scanned on its own with its operator as a
                   constant (UNION ALL, registry join per file): no join of file names
  polars           a Polars lazy query (scan_parquet per file with its operator as a literal)
  pandas           a straightforward pandas version
  postgres         a FlowKit-style count(DISTINCT ...) join in PostgreSQL (needs CROWD_BENCH_PG_DSN);
                   the events are loaded first (CSV export + COPY, not timed); `seconds` is the
                   query alone; `server_peak_rss_mb` is the backend's (and its parallel workers')
                   resident memory sampled from /proc during the query, `peak_rss_mb` the client's
Location rule 'last'. With --rounds N every variant runs N times, the variants alternating in
each round, so contention from other work hits all alike; `seconds` is the fastest round,
`seconds_median` and `seconds_runs` show the rest. Results go to bench/results/density.json.

    .venv/bin/python bench/bench_density.py --events 2000000          # smoke (about a minute)
    .venv/bin/python bench/bench_density.py --events 20000000         # target size
    source deploy/start-postgres.sh; .venv/bin/python bench/bench_density.py --events 5000000 --rounds 3
    CROWD_DUCKDB_MEMORY_LIMIT=4GB .venv/bin/python bench/bench_density.py --events 100000000 \
        --variants platform,handwritten                                       # scale check, bounded memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# platform_before runs the package extracted from --before-ref (CROWD_BENCH_CODE_ROOT) instead.
CODE_ROOT = os.environ.get("CROWD_BENCH_CODE_ROOT") or str(ROOT)
sys.path.insert(0, CODE_ROOT)

OPERATORS = ("telkomsel", "indosat", "xl", "tri")
WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)
CELLS_PER_OPERATOR = 3000
CELLS_PER_SITE = 3
FINEST, MIDDLE, TOP = 270, 45, 6
RESULTS = ROOT / "bench" / "results" / "density.json"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ data
def generate(workdir: Path, events: int, seed: int = 7) -> None:
    """Events Parquet per operator + a warehouse with drops, registry, districts and weights."""
    import duckdb

    from crowd_platform.common.warehouse import apply_schema

    con = duckdb.connect(str(workdir / "warehouse.duckdb"))
    apply_schema(con)
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SELECT setseed({seed / 100})")
    subscribers = max(1000, events // 6)
    # Subscriber keys: 64-hex digests, as operators send them.
    con.execute(f"CREATE TEMP TABLE subs AS SELECT i AS sid, sha256(CAST(i AS VARCHAR)) AS subscriber_key "
                f"FROM range({subscribers}) t(i)")
    for index, operator in enumerate(OPERATORS):
        share = events // len(OPERATORS)
        path = workdir / "lake" / f"{operator}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        log(f"  generating {share:,} events for {operator}")
        con.execute(f"""
            COPY (
                SELECT s.subscriber_key,
                       '510-{index:02d}-' || CAST(e.cell AS VARCHAR) AS cell_id,
                       TIMESTAMPTZ '{WINDOW.isoformat()}' + to_microseconds(e.offset_us) AS event_time,
                       'data' AS event_type
                FROM (
                    SELECT hash(i, {index}) % {subscribers} AS sid,
                           -- each subscriber mostly stays near a home cell, sometimes moves
                           CASE WHEN hash(i, 1) % 4 = 0 THEN hash(i, 2) % {CELLS_PER_OPERATOR}
                                ELSE hash(hash(i, {index}) % {subscribers}) % {CELLS_PER_OPERATOR} END AS cell,
                           CAST(hash(i, 3) % 900000000 AS BIGINT) AS offset_us
                    FROM range({share}) t(i)
                ) AS e JOIN subs AS s USING (sid)
            ) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)
        """)
        con.execute("INSERT INTO drops (drop_id, operator, feed, window_start, window_end, status, lake_path, "
                    "contract_version) VALUES (?, ?, 'events', ?, ?, 'accepted', ?, '1.0.0')",
                    [f"{operator}-bench", operator, WINDOW, WINDOW + timedelta(minutes=15), str(path)])
        con.execute(f"""
            INSERT INTO bts_registry (cell_id, operator, site_id, lon, lat, valid_from, valid_to)
            SELECT '510-{index:02d}-' || CAST(c AS VARCHAR), '{operator}',
                   '{operator}-s' || CAST(c // {CELLS_PER_SITE} AS VARCHAR), 106.8, -6.2,
                   TIMESTAMPTZ '2020-01-01 00:00:00+00', NULL
            FROM range({CELLS_PER_OPERATOR}) t(c)
        """)
        # Each site split over two neighbouring finest districts, 70/30.
        con.execute(f"""
            INSERT INTO bts_district_weights
            SELECT '{operator}-s' || CAST(s AS VARCHAR), '{operator}', 'L' || CAST((s + d) % {FINEST} AS VARCHAR),
                   CASE WHEN d = 0 THEN 0.7 ELSE 0.3 END, 'bench'
            FROM range({CELLS_PER_OPERATOR // CELLS_PER_SITE}) t(s), range(2) u(d)
        """)
    con.execute(f"INSERT INTO districts (district_code, level, level_rank, parent_code, is_admin_unit, area_km2) "
                f"SELECT 'L' || CAST(i AS VARCHAR), 'kelurahan', 0, 'M' || CAST(i % {MIDDLE} AS VARCHAR), "
                f"i % 50 <> 0, 1.0 + i % 7 FROM range({FINEST}) t(i)")
    con.execute(f"INSERT INTO districts (district_code, level, level_rank, parent_code, is_admin_unit, area_km2) "
                f"SELECT 'M' || CAST(i AS VARCHAR), 'kecamatan', 1, 'T' || CAST(i % {TOP} AS VARCHAR), true, 10.0 "
                f"FROM range({MIDDLE}) t(i)")
    con.execute(f"INSERT INTO districts (district_code, level, level_rank, parent_code, is_admin_unit, area_km2) "
                f"SELECT 'T' || CAST(i AS VARCHAR), 'kabkota', 2, NULL, true, 100.0 FROM range({TOP}) t(i)")
    con.close()


# ------------------------------------------------------------------ variants
def _shares() -> dict[str, float]:
    from crowd_platform.density.presence import market_shares
    from crowd_platform.common.settings import get_settings

    return {op: share for op, share in market_shares(get_settings()).items() if op in OPERATORS}


def run_platform(workdir: Path) -> dict[str, float]:
    from crowd_platform.density.districts import compute_district_density
    from crowd_platform.density.presence import compute_bts_presence
    from crowd_platform.common.settings import get_settings
    from crowd_platform.common.warehouse import connect

    settings = get_settings(workdir).with_config(density={"location_rule": "last"})
    end = WINDOW + timedelta(minutes=15)
    with connect(settings.warehouse_path) as con:
        compute_bts_presence(con, settings, WINDOW, end, "bench")
        compute_district_density(con, settings, WINDOW, end, "bench")
        rows = con.execute("SELECT district_code, people_estimate FROM district_density").fetchall()
    return dict(rows)


HANDWRITTEN = """
-- The best single query we know for these numbers: the techniques of sql/density/bts_presence_last.sql
-- (64-bit hash of the subscriber key, one max() over packed (event time, cell rank)) without the
-- platform's steps, temp tables, transaction, audit and k-anonymised publication.
WITH cells AS (
    SELECT CAST(row_number() OVER (ORDER BY operator, cell_id, valid_from) AS BIGINT) AS cell_rank,
           operator, cell_id, site_id, valid_from, valid_to
    FROM bts_registry
),
located AS (
    SELECT d.operator,
           CAST(max(CAST(epoch_us(e.event_time) AS HUGEINT) * 4294967296 + c.cell_rank) & 4294967295 AS BIGINT) AS cell_rank
    FROM read_parquet($files, filename = true) AS e
    JOIN drops AS d ON d.lake_path = e.filename
    JOIN cells AS c ON c.cell_id = e.cell_id AND c.operator = d.operator
     AND e.event_time >= c.valid_from AND (c.valid_to IS NULL OR e.event_time < c.valid_to)
    GROUP BY d.operator, hash(e.subscriber_key)
),
sites AS (
    SELECT l.operator, c.site_id, count(*) AS subscribers
    FROM located AS l JOIN cells AS c USING (cell_rank)
    GROUP BY l.operator, c.site_id
),
finest AS (
    -- pooled estimator: all operators' subscribers over the reporting operators' total share
    SELECT w.district_code, sum(s.subscribers * w.weight) / (SELECT sum(share) FROM shares) AS people
    FROM sites AS s
    JOIN bts_district_weights AS w ON w.site_id = s.site_id AND w.scope = s.operator
    GROUP BY w.district_code
),
l1 AS (SELECT d.parent_code AS district_code, sum(f.people) AS people FROM finest AS f
       JOIN districts AS d ON d.district_code = f.district_code GROUP BY d.parent_code),
l2 AS (SELECT d.parent_code AS district_code, sum(l1.people) AS people FROM l1
       JOIN districts AS d ON d.district_code = l1.district_code GROUP BY d.parent_code)
SELECT * FROM finest UNION ALL SELECT * FROM l1 UNION ALL SELECT * FROM l2
"""


def run_handwritten(workdir: Path) -> dict[str, float]:
    import duckdb

    con = duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True)
    con.execute("SET enable_progress_bar = false")
    shares = _shares()
    con.execute("CREATE TEMP TABLE shares AS SELECT * FROM (VALUES " +
                ", ".join(f"('{op}', {share})" for op, share in shares.items()) + ") v(operator, share)")
    files = [row[0] for row in con.execute("SELECT lake_path FROM drops").fetchall()]
    rows = con.execute(HANDWRITTEN, {"files": files}).fetchall()
    con.close()
    return dict(rows)


FILESCAN = """
-- Like HANDWRITTEN, but each lake file is scanned on its own with its operator as a constant
-- (one UNION ALL branch per file, the registry join filtered to that operator): no join of
-- every event's file name to drops.
WITH cells AS (
    SELECT CAST(row_number() OVER (ORDER BY operator, cell_id, valid_from) AS BIGINT) AS cell_rank,
           operator, cell_id, site_id, valid_from, valid_to
    FROM bts_registry
),
events AS (
    {branches}
),
located AS (
    SELECT operator,
           CAST(max(CAST(epoch_us(event_time) AS HUGEINT) * 4294967296 + cell_rank) & 4294967295 AS BIGINT) AS cell_rank
    FROM events
    GROUP BY operator, subscriber
),
sites AS (
    SELECT l.operator, c.site_id, count(*) AS subscribers
    FROM located AS l JOIN cells AS c USING (cell_rank)
    GROUP BY l.operator, c.site_id
),
finest AS (
    SELECT w.district_code, sum(s.subscribers * w.weight) / (SELECT sum(share) FROM shares) AS people
    FROM sites AS s
    JOIN bts_district_weights AS w ON w.site_id = s.site_id AND w.scope = s.operator
    GROUP BY w.district_code
),
l1 AS (SELECT d.parent_code AS district_code, sum(f.people) AS people FROM finest AS f
       JOIN districts AS d ON d.district_code = f.district_code GROUP BY d.parent_code),
l2 AS (SELECT d.parent_code AS district_code, sum(l1.people) AS people FROM l1
       JOIN districts AS d ON d.district_code = l1.district_code GROUP BY d.parent_code)
SELECT * FROM finest UNION ALL SELECT * FROM l1 UNION ALL SELECT * FROM l2
"""
FILESCAN_BRANCH = """
    SELECT {operator} AS operator, hash(e.subscriber_key) AS subscriber, c.cell_rank, e.event_time
    FROM read_parquet({path}) AS e
    JOIN cells AS c ON c.cell_id = e.cell_id AND c.operator = {operator}
     AND e.event_time >= c.valid_from AND (c.valid_to IS NULL OR e.event_time < c.valid_to)"""


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def run_filescan(workdir: Path) -> dict[str, float]:
    import duckdb

    con = duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True)
    con.execute("SET enable_progress_bar = false")
    shares = _shares()
    con.execute("CREATE TEMP TABLE shares AS SELECT * FROM (VALUES " +
                ", ".join(f"('{op}', {share})" for op, share in shares.items()) + ") v(operator, share)")
    drops = con.execute("SELECT operator, lake_path FROM drops WHERE status = 'accepted' ORDER BY drop_id").fetchall()
    branches = "\n    UNION ALL".join(FILESCAN_BRANCH.format(operator=_literal(op), path=_literal(path)) for op, path in drops)
    rows = con.execute(FILESCAN.format(branches=branches)).fetchall()
    con.close()
    return dict(rows)


def run_polars(workdir: Path) -> dict[str, float]:
    import duckdb
    import polars as pl

    con = duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True)
    drops = con.execute("SELECT operator, lake_path FROM drops WHERE status = 'accepted' ORDER BY drop_id").fetchall()
    registry = pl.from_arrow(con.sql("SELECT cell_id, operator, site_id, valid_from, valid_to FROM bts_registry").to_arrow_table())
    weights = pl.from_arrow(con.sql("SELECT site_id, scope AS operator, district_code, weight FROM bts_district_weights").to_arrow_table())
    districts = pl.from_arrow(con.sql("SELECT district_code, parent_code FROM districts").to_arrow_table())
    con.close()
    registry = registry.with_columns(pl.col("valid_from", "valid_to").dt.convert_time_zone("UTC"))
    total_share = sum(_shares().values())
    events = pl.concat([
        pl.scan_parquet(path).select("subscriber_key", "cell_id", "event_time").with_columns(operator=pl.lit(operator))
        for operator, path in drops
    ])
    located = (
        events.join(registry.lazy(), on=["operator", "cell_id"])
        .filter((pl.col("event_time") >= pl.col("valid_from"))
                & (pl.col("valid_to").is_null() | (pl.col("event_time") < pl.col("valid_to"))))
        # last event per subscriber; ties on time go to the larger cell_id
        .group_by("operator", "subscriber_key")
        .agg(pl.col("site_id").sort_by(["event_time", "cell_id"]).last())
    )
    sites = located.group_by("operator", "site_id").agg(subscribers=pl.len())
    finest = (
        sites.join(weights.lazy(), on=["operator", "site_id"])
        .group_by("district_code")
        .agg(people=(pl.col("subscribers") * pl.col("weight")).sum() / total_share)
        .collect()
    )
    result = dict(zip(finest["district_code"], finest["people"]))
    level = finest
    for _ in range(2):
        level = (level.join(districts, on="district_code").group_by("parent_code").agg(pl.col("people").sum())
                 .rename({"parent_code": "district_code"}))
        result.update(dict(zip(level["district_code"], level["people"])))
    return result


def run_pandas(workdir: Path) -> dict[str, float]:
    import duckdb
    import pandas as pd

    con = duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True)
    drops = con.execute("SELECT operator, lake_path FROM drops").df()
    registry = con.execute("SELECT cell_id, operator, site_id FROM bts_registry").df()
    weights = con.execute("SELECT site_id, scope AS operator, district_code, weight FROM bts_district_weights").df()
    districts = con.execute("SELECT district_code, parent_code FROM districts").df()
    con.close()
    shares = _shares()
    frames = []
    for operator, path in zip(drops["operator"], drops["lake_path"]):
        frame = pd.read_parquet(path, columns=["subscriber_key", "cell_id", "event_time"])
        frame["operator"] = operator
        frames.append(frame)
    events = pd.concat(frames, ignore_index=True)
    events = events.sort_values(["event_time", "cell_id"])
    last = events.groupby(["operator", "subscriber_key"], sort=False).tail(1)
    located = last.merge(registry, on=["operator", "cell_id"])
    sites = located.groupby(["operator", "site_id"]).size().rename("subscribers").reset_index()
    apportioned = sites.merge(weights, on=["operator", "site_id"])
    apportioned["people"] = apportioned["subscribers"] * apportioned["weight"] / sum(shares.values())
    finest = apportioned.groupby("district_code")["people"].sum()
    parents = districts.set_index("district_code")["parent_code"]
    result = dict(finest)
    level = finest
    for _ in range(2):
        level = level.groupby(parents.reindex(level.index).values).sum()
        result.update(dict(level))
    return result


def _server_rss_kb(backend_pid: int) -> int:
    """Resident memory (kB) of a PostgreSQL backend and of its parallel workers, from /proc."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(entry) != backend_pid:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                if f"parallel worker for PID {backend_pid}".encode() not in cmdline:
                    continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


class _ServerMemory:
    """Samples the backend's (+ parallel workers') RSS every 20 ms in a thread; keeps the peak.
    Also reads the backend's own high-water mark (VmHWM) at the end."""

    def __init__(self, backend_pid: int):
        import threading

        self.backend_pid, self.peak_kb, self._stop = backend_pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _server_rss_kb(self.backend_pid))
            self._stop.wait(0.02)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        hwm = None
        try:
            for line in Path(f"/proc/{self.backend_pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
        except OSError:
            pass
        return {"server_peak_rss_mb": round(self.peak_kb / 1024, 1),
                "server_backend_hwm_mb": round(hwm, 1) if hwm is not None else None}


def run_postgres(workdir: Path, dsn: str) -> tuple[dict[str, float], dict[str, float]]:
    """FlowKit-style: load events (not timed), then count(DISTINCT) per site of each subscriber's
    last cell (timed alone). Returns the values and {seconds (query), load_seconds, server memory}."""
    import duckdb
    import psycopg2

    load_start = time.perf_counter()

    con = duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True)
    shares = _shares()
    pg = psycopg2.connect(dsn)
    pg.autocommit = True
    cur = pg.cursor()
    cur.execute("DROP TABLE IF EXISTS bench_events, bench_cells, bench_weights, bench_districts, bench_shares")
    cur.execute("CREATE UNLOGGED TABLE bench_events (operator text, subscriber_key text, cell_id text, event_time timestamptz)")
    csv_path = workdir / "events.csv"
    # A table function cannot take a subquery: bind the file list through a variable.
    files = [row[0] for row in con.execute("SELECT lake_path FROM drops WHERE lake_path IS NOT NULL").fetchall()]
    con.execute("SET VARIABLE bench_files = $files", {"files": files})
    con.execute(f"COPY (SELECT d.operator, e.subscriber_key, e.cell_id, e.event_time FROM read_parquet("
                f"getvariable('bench_files'), filename = true) e JOIN drops d ON d.lake_path = e.filename) "
                f"TO '{csv_path}' (HEADER false)")
    with open(csv_path) as handle:
        cur.copy_expert("COPY bench_events FROM STDIN WITH (FORMAT csv)", handle)
    for table, sql in (("bench_cells", "SELECT cell_id, operator, site_id FROM bts_registry"),
                       ("bench_weights", "SELECT site_id, scope, district_code, weight FROM bts_district_weights"),
                       ("bench_districts", "SELECT district_code, parent_code FROM districts")):
        rows = con.execute(sql).fetchall()
        cur.execute(f"CREATE UNLOGGED TABLE {table} AS SELECT * FROM (VALUES " +
                    ",".join(cur.mogrify("(" + ",".join(["%s"] * len(row)) + ")", row).decode() for row in rows) +
                    f") v({','.join(c[0] for c in con.execute(sql).description)})")
    cur.execute("CREATE UNLOGGED TABLE bench_shares (operator text, share float8)")
    cur.executemany("INSERT INTO bench_shares VALUES (%s, %s)", list(shares.items()))
    cur.execute("ANALYZE")
    load_seconds = time.perf_counter() - load_start
    log(f"  postgres load {load_seconds:.1f}s (CSV export + COPY + ANALYZE, not timed)")
    cur.execute("SELECT pg_backend_pid()")
    memory = _ServerMemory(cur.fetchone()[0])
    query_start = time.perf_counter()
    cur.execute("""
        WITH last_event AS (
            SELECT DISTINCT ON (operator, subscriber_key) operator, subscriber_key, cell_id
            FROM bench_events ORDER BY operator, subscriber_key, event_time DESC, cell_id DESC
        ), sites AS (
            SELECT c.operator, c.site_id, count(DISTINCT l.subscriber_key) AS subscribers
            FROM last_event l JOIN bench_cells c ON c.cell_id = l.cell_id AND c.operator = l.operator
            GROUP BY c.operator, c.site_id
        ), finest AS (
            SELECT w.district_code, sum(s.subscribers * w.weight) / (SELECT sum(share) FROM bench_shares) AS people
            FROM sites s JOIN bench_weights w ON w.site_id = s.site_id AND w.scope = s.operator
            GROUP BY w.district_code
        ), l1 AS (SELECT d.parent_code AS district_code, sum(people) AS people FROM finest f
                  JOIN bench_districts d USING (district_code) GROUP BY d.parent_code),
        l2 AS (SELECT d.parent_code AS district_code, sum(people) AS people FROM l1
               JOIN bench_districts d USING (district_code) GROUP BY d.parent_code)
        SELECT * FROM finest UNION ALL SELECT * FROM l1 UNION ALL SELECT * FROM l2
    """)
    rows = cur.fetchall()
    query_seconds = time.perf_counter() - query_start
    server = memory.stop()
    log(f"  postgres query {query_seconds:.1f}s, server {server}")
    cur.execute("DROP TABLE IF EXISTS bench_events, bench_cells, bench_weights, bench_districts, bench_shares")
    pg.close()
    con.close()
    return {code: float(people) for code, people in rows}, {"seconds": query_seconds, "load_seconds": round(load_seconds, 2), **server}


def child(variant: str, workdir: Path, output: Path) -> None:
    # Imports and contract parsing happen once per process in production: keep them out of the timing.
    import duckdb  # noqa: F401
    import pandas  # noqa: F401

    _shares()
    started = time.perf_counter()
    extra: dict = {}
    if variant in ("platform", "platform_before"):
        values = run_platform(workdir)
    elif variant == "handwritten":
        values = run_handwritten(workdir)
    elif variant == "filescan":
        values = run_filescan(workdir)
    elif variant == "polars":
        values = run_polars(workdir)
    elif variant == "pandas":
        values = run_pandas(workdir)
    else:
        values, extra = run_postgres(workdir, os.environ["CROWD_BENCH_PG_DSN"])
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    import crowd_platform

    measured = {"seconds": seconds, "peak_rss_mb": peak_mb}
    if variant.startswith("platform"):
        measured["code"] = str(Path(crowd_platform.__file__).resolve().parents[1])
    if extra:  # postgres: the query alone; the whole child (load included) kept apart
        measured.update(extra, seconds_with_load=seconds, peak_rss_mb_client=peak_mb)
        measured["peak_rss_mb"] = extra.get("server_peak_rss_mb")
    measured["values"] = {k: v for k, v in values.items() if k is not None}
    output.write_text(json.dumps(measured))


def extract_ref(ref: str, target: Path) -> Path:
    """The package, SQL, config and contracts of git ``ref`` under ``target`` (read-only `git archive`)."""
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "crowd_platform", "sql", "config", "data_contracts"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000_000, help="events in the window (all operators)")
    parser.add_argument("--variants", default="platform,platform_before,handwritten,filescan,polars,pandas,postgres")
    parser.add_argument("--rounds", type=int, default=1, help="run every variant this many times, alternating")
    parser.add_argument("--before-ref", default="HEAD", help="git ref whose code platform_before runs")
    parser.add_argument("--workdir", help="keep data here (default: a temporary folder, removed after); reused if it has data")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "WORKDIR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_density_"))
    workdir.mkdir(parents=True, exist_ok=True)
    variants = args.variants.split(",")
    try:
        if (workdir / "warehouse.duckdb").exists() and args.workdir:
            log(f"reusing the data in {workdir}")
        else:
            log(f"generating {args.events:,} events in {workdir}")
            started = time.perf_counter()
            generate(workdir, args.events)
            log(f"  generated in {time.perf_counter() - started:.1f}s")
        environments = {variant: None for variant in variants}
        before_commit = None
        if "platform_before" in variants:
            before_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.before_ref], check=True,
                                           capture_output=True, text=True).stdout.strip()
            code = extract_ref(args.before_ref, workdir / "before_code")
            environments["platform_before"] = {**os.environ, "CROWD_BENCH_CODE_ROOT": str(code)}
        runs: dict[str, list[dict]] = {variant: [] for variant in variants}
        results: dict[str, dict] = {}
        reference: dict[str, float] | None = None
        for round_number in range(args.rounds):
            for variant in variants:
                if variant == "postgres" and not os.environ.get("CROWD_BENCH_PG_DSN"):
                    results[variant] = {"skipped": "no server (set CROWD_BENCH_PG_DSN)"}
                    continue
                if variant in results:  # failed or skipped earlier
                    continue
                out = workdir / f"{variant}.json"
                log(f"round {round_number + 1}: running {variant}")
                completed = subprocess.run([sys.executable, __file__, "--child", variant, str(workdir), str(out)],
                                           env=environments[variant])
                if completed.returncode != 0:
                    results[variant] = {"failed": f"exit code {completed.returncode}"}
                    continue
                measured = json.loads(out.read_text())
                values = measured.pop("values")
                if reference is None:
                    reference = values
                diff = max((abs(values.get(code, 0.0) - people) for code, people in reference.items()), default=0.0)
                measured["max_abs_diff_vs_first"] = diff
                measured["districts"] = len(values)
                runs[variant].append(measured)
                log(f"  {variant}: {measured['seconds']:.2f}s, peak {measured['peak_rss_mb'] or 0:.0f} MB, max diff {diff:.2e}")
        for variant, measured in runs.items():
            if variant in results or not measured:
                continue
            best = min(measured, key=lambda run: run["seconds"])
            seconds = sorted(run["seconds"] for run in measured)
            results[variant] = {**best, "seconds_median": seconds[len(seconds) // 2], "seconds_runs": [round(x, 3) for x in seconds],
                                "peak_rss_mb": max(run["peak_rss_mb"] or 0 for run in measured),
                                "max_abs_diff_vs_first": max(run["max_abs_diff_vs_first"] for run in measured)}
        platform = results.get("platform", {}).get("seconds")
        summary = {}
        for variant in ("handwritten", "filescan", "polars", "platform_before", "pandas", "postgres"):
            other = results.get(variant, {}).get("seconds")
            if platform and other:
                summary[f"platform_vs_{variant}"] = (round(platform / other, 3) if variant in ("handwritten", "filescan", "polars", "platform_before")
                                                     else round(other / platform, 2))
        baselines = {variant: results[variant]["seconds"] for variant in ("handwritten", "filescan", "polars")
                     if "seconds" in results.get(variant, {})}
        if platform and baselines:
            fastest = min(baselines, key=baselines.get)
            summary["fastest_baseline"] = fastest
            summary["platform_vs_fastest_baseline"] = round(platform / baselines[fastest], 3)
        report = {
            "benchmark": "density one window, location rule last",
            "events": args.events,
            "operators": list(OPERATORS),
            "cpu_count": os.cpu_count(),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "rounds": args.rounds,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "platform_before_ref": before_commit,
            "variants": results,
            "ratios": summary,
            "targets": {"platform_vs_handwritten": "<= 1.5", "platform_vs_fastest_baseline": "<= 1.1",
                        "pandas_speedup": ">= 10", "postgres_speedup": ">= 10 (query alone)", "peak_rss_mb": "< 4096"},
        }
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
