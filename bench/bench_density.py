"""Density benchmark: one 15-minute window of N events from 4 operators.

Compares, on the same data in the same run (each variant in its own process, so peak memory
is that variant's own):
  platform     compute_bts_presence + compute_district_density (what the assets run)
  handwritten  the best single hand-written DuckDB query for the same district numbers
  pandas       a straightforward pandas version
  postgres     a FlowKit-style count(DISTINCT ...) join in PostgreSQL (needs CROWD_BENCH_PG_DSN)
Location rule 'last'. Results go to bench/results/density.json.

    .venv/bin/python bench/bench_density.py --events 2000000          # smoke (about a minute)
    .venv/bin/python bench/bench_density.py --events 20000000         # target size
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
sys.path.insert(0, str(ROOT))

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


def run_postgres(workdir: Path, dsn: str) -> dict[str, float]:
    """FlowKit-style: load events, then count(DISTINCT) per site of each subscriber's last cell."""
    import duckdb
    import psycopg2

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
    load_start = time.perf_counter()
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
    log(f"  postgres load {time.perf_counter() - load_start:.1f}s (not timed)")
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
    log(f"  postgres query {time.perf_counter() - query_start:.1f}s")
    cur.execute("DROP TABLE IF EXISTS bench_events, bench_cells, bench_weights, bench_districts, bench_shares")
    pg.close()
    con.close()
    return {code: float(people) for code, people in rows}


def child(variant: str, workdir: Path, output: Path) -> None:
    # Imports and contract parsing happen once per process in production: keep them out of the timing.
    import duckdb  # noqa: F401
    import pandas  # noqa: F401

    _shares()
    started = time.perf_counter()
    if variant == "platform":
        values = run_platform(workdir)
    elif variant == "handwritten":
        values = run_handwritten(workdir)
    elif variant == "pandas":
        values = run_pandas(workdir)
    else:
        values = run_postgres(workdir, os.environ["CROWD_BENCH_PG_DSN"])
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    output.write_text(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb,
                                  "values": {k: v for k, v in values.items() if k is not None}}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000_000, help="events in the window (all operators)")
    parser.add_argument("--variants", default="platform,handwritten,pandas,postgres")
    parser.add_argument("--workdir", help="keep data here (default: a temporary folder, removed after)")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "WORKDIR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_density_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        log(f"generating {args.events:,} events in {workdir}")
        started = time.perf_counter()
        generate(workdir, args.events)
        log(f"  generated in {time.perf_counter() - started:.1f}s")
        results: dict[str, dict] = {}
        reference: dict[str, float] | None = None
        for variant in args.variants.split(","):
            if variant == "postgres" and not os.environ.get("CROWD_BENCH_PG_DSN"):
                results[variant] = {"skipped": "no server (set CROWD_BENCH_PG_DSN)"}
                log("postgres: skipped, no server")
                continue
            out = workdir / f"{variant}.json"
            log(f"running {variant}")
            completed = subprocess.run([sys.executable, __file__, "--child", variant, str(workdir), str(out)])
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
            results[variant] = measured
            log(f"  {variant}: {measured['seconds']:.2f}s, peak {measured['peak_rss_mb']:.0f} MB, max diff {diff:.2e}")
        platform = results.get("platform", {}).get("seconds")
        summary = {}
        for variant in ("handwritten", "pandas", "postgres"):
            other = results.get(variant, {}).get("seconds")
            if platform and other:
                summary[f"platform_vs_{variant}"] = round(platform / other, 3) if variant == "handwritten" else round(other / platform, 2)
        report = {
            "benchmark": "density one window, location rule last",
            "events": args.events,
            "operators": list(OPERATORS),
            "cpu_count": os.cpu_count(),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "variants": results,
            "ratios": summary,
            "targets": {"platform_vs_handwritten": "<= 1.5", "pandas_speedup": ">= 10", "postgres_speedup": ">= 10",
                        "peak_rss_mb": "< 4096"},
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
