"""National window: 100 M events from five operators, landed -> end of the `window_job` run.

A synthetic national registry of 500 k cells (bench_geography.synthetic_registry: real
OpenCelliD positions jittered by ~3 km, operators by their contracts' market shares), delivered
as each operator's cell-list drop and run through the landing sensor and `geography_job`
(untimed set-up, timed on its own). Then one window, Thursday 2020-04-02 04:00 UTC (11:00 WIB,
inside the national config's emergency period), of ``--events`` events split by market share
over telkomsel, indosat, xl, tri and smartfren, each drop in its operator's contract layout
(gzip CSV, CSV, Parquet). Timed: the drops land, the landing sensor ticks, `window_job` runs
in this process as the daemon's run would (bench_latency.run_window: embedded SQLite instance,
`execute_in_process`, so every step runs in this process and its peak RSS is the run's).

Events: subscribers homed on cells with a heavy-tailed weight (log-normal, sigma 1) on top of the
registry's own density; ~1.25 events per active subscriber in the window (a quarter of them
make two, at distinct seconds, so no duplicate rows), a quarter of events away from home (at
another subscriber's home cell), 64-hex keys (sha256 of operator, day and subscriber number).
Drops are generated in chunks and streamed to their files (bounded memory), in a child
process, as is the set-up, so the peak RSS reported is the timed window's alone. No baseline
history: no alert can be evaluated (expected), the alert steps still run.

    .venv/bin/python bench/bench_national_window.py --events 2000000 --cells 50000   # smoke (~70 s)
    .venv/bin/python bench/bench_national_window.py                                  # 100 M, 500 k cells (~13 min)
    .venv/bin/python bench/bench_national_window.py --presence-limits 6GB,14GB       # + bts_presence alone again

Disk at 100 M: 7.3 GB of drop files, then the home up to ~20 GB during the run (raw copies,
staging, lake; 15 GB after): keep ~30 GB free. Memory: ~6 GB (the run), ~3 GB (set-up, drops).
Results: bench/results/national_window.json (or --output).
"""

from __future__ import annotations

import argparse
import hashlib
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
NATIONAL_CONFIG = ROOT / "config" / "platform_national.yaml"
os.environ["CROWD_CONFIG"] = str(NATIONAL_CONFIG)  # before any crowd_platform import
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_geography import synthetic_registry  # noqa: E402
from bench_latency import land, log, run_window  # noqa: E402

OPERATORS = ("telkomsel", "indosat", "xl", "tri", "smartfren")
WINDOW_START = datetime(2020, 4, 2, 4, 0, tzinfo=timezone.utc)  # Thursday, 11:00 WIB
CELLS_VALID_FROM = datetime(2020, 4, 1, 4, 0, tzinfo=timezone.utc)  # the cell lists arrive the day before
WINDOW = timedelta(minutes=15)
EVENTS_PER_SUBSCRIBER = 1.25
CHUNK = 4_000_000
RESULTS = ROOT / "bench" / "results" / "national_window.json"


def _home_env(home: Path) -> None:
    os.environ["CROWD_HOME"] = str(home)  # before any crowd_platform import: definitions read it
    os.environ.pop("DAGSTER_HOME", None)
    os.environ.setdefault("CROWD_LOG_LEVEL", "WARNING")
    # Bounded like a production worker (as bench_latency); large aggregations spill instead of swapping.
    os.environ.setdefault("CROWD_DUCKDB_MEMORY_LIMIT", "6GB")


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _require_accepted(settings) -> None:
    """A quarantined synthetic drop would make the timing meaningless: fail loudly with its reason."""
    import duckdb

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    bad = con.execute("SELECT drop_id, status, reason FROM drops WHERE status NOT IN ('accepted', 'superseded')").fetchall()
    con.close()
    if bad:
        for row in bad:
            log(f"NOT ACCEPTED: {row}")
        raise RuntimeError(f"{len(bad)} drops not accepted, e.g.: {bad[0]}")


# ------------------------------------------------------------------ set-up (child process)
def phase_setup(args, home: Path) -> dict:
    """Synthetic registry -> each operator's cell-list drop -> landing sensor -> geography_job."""
    from crowd_platform.common.contracts import contract_for
    from crowd_platform.common.settings import get_settings
    from crowd_platform.geography import registry as cell_registry
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import process_pending
    from crowd_platform.simulator import keys
    from crowd_platform.simulator.drops import write_drop

    import polars as pl

    settings = get_settings(home)
    settings.ensure_dirs()
    instance = get_instance(settings)
    config = settings.config.geography
    started = time.perf_counter()
    reference = cell_registry.registry_from_opencellid(config.cells_reference, settings.contracts_dir,
                                                       CELLS_VALID_FROM, config.site_decimals)
    registry = synthetic_registry(reference, settings.contracts_dir, args.cells, args.seed, config.site_decimals)
    incoming = home.parent / "incoming_cells"
    delivered = {}
    for operator in OPERATORS:
        frame = pl.from_pandas(registry.loc[registry["operator"] == operator, ["cell_id", "lon", "lat", "radio"]])
        write_drop(incoming, contract_for(settings.contracts_dir, operator, "cells"), frame, feed="cells",
                   operator=operator, window_start=CELLS_VALID_FROM, window_end=CELLS_VALID_FROM + WINDOW,
                   key_id=keys.key_id(operator, CELLS_VALID_FROM.date()), created_at=CELLS_VALID_FROM)
        delivered[operator] = frame.height
    written_s = time.perf_counter() - started
    land(incoming, settings.landing)
    shutil.rmtree(incoming, ignore_errors=True)
    log(f"set-up: {sum(delivered.values()):,} cells delivered; geography through the landing sensor (timed apart)")
    began = time.perf_counter()
    summary = process_pending(settings, instance, progress=log, with_presence_daily=False)
    geography_s = time.perf_counter() - began
    if not summary.ok or summary.runs == 0:
        raise RuntimeError(f"set-up failed: {summary.failed_runs or 'no run requested'}")
    _require_accepted(settings)
    runs = []
    for run in instance.get_runs(limit=20):
        steps = {stat.step_key: round(stat.end_time - stat.start_time, 2)
                 for stat in instance.get_run_step_stats(run.run_id) if stat.start_time and stat.end_time}
        runs.append({"job": run.job_name, "status": str(run.status.value), "steps_s": steps})
    import duckdb

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    accepted = dict(con.execute("SELECT operator, count(*) FROM bts_registry WHERE valid_to IS NULL GROUP BY ALL").fetchall())
    rejects = dict(con.execute("SELECT reason, count(*) FROM bts_registry_rejects GROUP BY ALL").fetchall())
    sites = con.execute("SELECT count(DISTINCT site_id) FROM bts_registry WHERE valid_to IS NULL").fetchone()[0]
    con.close()
    return {
        "cells_delivered": delivered,
        "synthesize_and_write_cell_drops_s": round(written_s, 1),
        "process_pending_s": round(geography_s, 1),
        "runs": runs,
        "cells_accepted": accepted,
        "cells_rejected": rejects,
        "sites": sites,
        "peak_rss_mb": _peak_mb(),
    }


# ------------------------------------------------------------------ drops (child process)
def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


class _DropWriter:
    """One drop file in the contract's layout, written chunk by chunk (encode_drop's formats)."""

    def __init__(self, path: Path, contract):
        import gzip

        self.layout = contract.layout
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parquet = None
        self.handle = None
        if self.layout.get("format") == "parquet":
            return
        raw = open(path, "wb")
        self.raw = raw
        # Level 1 as the simulator: 64-hex keys barely compress; mtime 0 keeps bytes deterministic.
        self.handle = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) \
            if self.layout.get("compression") == "gzip" else raw
        self.first = True

    def write(self, frame) -> None:
        if self.layout.get("format") == "parquet":
            import pyarrow.parquet as pq

            table = frame.to_arrow()
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.path, table.schema,
                                                compression=self.layout.get("compression", "snappy"))
            self.parquet.write_table(table)
            return
        text = frame.write_csv(separator=self.layout.get("delimiter", ","),
                               include_header=self.first and self.layout.get("header", True))
        self.first = False
        self.handle.write(text.encode(self.layout.get("encoding", "utf-8")))

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
            return
        self.handle.close()
        if self.handle is not self.raw:
            self.raw.close()


def write_operator_drop(settings, con, incoming: Path, operator: str, events: int, cells, seed: int) -> dict:
    """Stream one operator's events drop for the window into ``incoming/<operator>/`` + manifest."""
    import numpy as np
    import polars as pl

    from crowd_platform.common.contracts import contract_for
    from crowd_platform.simulator import keys
    from crowd_platform.simulator.drops import MANIFEST_SUFFIX, _atomic_write, build_manifest, drop_file_name, to_operator_layout

    contract = contract_for(settings.contracts_dir, operator, "events")
    rng = np.random.default_rng(seed)
    subscribers = max(int(events / EVENTS_PER_SUBSCRIBER), 1)
    # Home cells: heavy-tailed cell weights (log-normal) over the registry's own (urban) density.
    weight = rng.lognormal(0.0, 1.0, len(cells))
    home = rng.choice(len(cells), size=subscribers, p=weight / weight.sum()).astype(np.int32)
    con.register("cells", pl.DataFrame({"cell": np.arange(len(cells), dtype=np.int32), "cell_id": cells}))
    day = WINDOW_START.strftime("%Y%m%d")
    file_name = drop_file_name(operator, "events", WINDOW_START, 1, contract)
    path = incoming / operator / file_name
    writer = _DropWriter(path, contract)
    for begin in range(0, events, CHUNK):
        index = np.arange(begin, min(begin + CHUNK, events), dtype=np.int64)
        sid = index % subscribers
        repeat = index // subscribers  # 0 for every subscriber's first event, 1 for the second
        away = rng.random(len(index)) < 0.25
        owner = np.where(away, rng.integers(0, subscribers, len(index)), sid)
        # Distinct seconds for a subscriber's events: no duplicate rows whatever the cells.
        offset = (sid * 7919 + repeat * 450) % 900
        chunk = pl.DataFrame({"sid": sid, "cell": home[owner], "offset": offset.astype(np.int64),
                              "kind": rng.integers(0, 4, len(index)).astype(np.int64)})
        con.register("chunk", chunk)
        frame = pl.from_arrow(con.sql(f"""
            SELECT sha256('{operator}:{day}:' || CAST(x.sid AS VARCHAR)) AS subscriber_key, c.cell_id,
                   TIMESTAMPTZ '{WINDOW_START.isoformat()}' + to_seconds(x."offset") AS event_time,
                   ['call', 'sms', 'data', 'location_update'][x.kind + 1] AS event_type
            FROM chunk AS x JOIN cells AS c USING (cell)
        """).to_arrow_table()).with_columns(pl.col("event_time").dt.convert_time_zone("UTC"))
        con.unregister("chunk")
        writer.write(to_operator_layout(frame, contract))
        del frame, chunk
    writer.close()
    con.unregister("cells")
    manifest = build_manifest(contract=contract, operator=operator, feed="events", file_name=file_name, payload=b"",
                              row_count=events, window_start=WINDOW_START, window_end=WINDOW_START + WINDOW,
                              delivery=1, key_id=keys.key_id(operator, WINDOW_START.date()),
                              created_at=WINDOW_START + WINDOW)
    manifest["sha256"] = _sha256_file(path)
    manifest["bytes"] = path.stat().st_size
    _atomic_write(path.with_name(file_name + MANIFEST_SUFFIX), json.dumps(manifest, indent=1).encode())
    return {"rows": events, "subscribers": subscribers, "file": file_name, "bytes": manifest["bytes"],
            "layout": {key: contract.layout.get(key) for key in ("format", "compression")}}


def phase_drops(args, home: Path) -> dict:
    """The window's five drops, from the cells the set-up's registry accepted (bts_registry)."""
    import duckdb

    from crowd_platform.common.settings import get_settings
    from crowd_platform.density.presence import market_shares

    settings = get_settings(home)
    shares = {op: share for op, share in market_shares(settings).items() if op in OPERATORS}
    total = sum(shares.values())
    warehouse = duckdb.connect(str(settings.warehouse_path), read_only=True)
    cells = {op: [row[0] for row in warehouse.execute(
        "SELECT cell_id FROM bts_registry WHERE operator = ? AND valid_to IS NULL ORDER BY cell_id", [op]).fetchall()]
        for op in OPERATORS}
    warehouse.close()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")
    incoming = home.parent / "incoming"
    started = time.perf_counter()
    drops = {}
    counts = {op: int(round(args.events * shares[op] / total)) for op in OPERATORS}
    for index, operator in enumerate(OPERATORS):
        began = time.perf_counter()
        drops[operator] = write_operator_drop(settings, con, incoming, operator, counts[operator], cells[operator],
                                              args.seed * 10 + index)
        drops[operator]["market_share"] = shares[operator]
        drops[operator]["write_s"] = round(time.perf_counter() - began, 1)
        log(f"drops: {operator} {counts[operator]:,} events, {drops[operator]['bytes'] / 1e9:.2f} GB "
            f"in {drops[operator]['write_s']} s")
    con.close()
    return {"drops": drops, "write_s": round(time.perf_counter() - started, 1), "peak_rss_mb": _peak_mb()}


def phase_presence(home: Path) -> dict:
    """bts_presence of the timed window again, alone (its own run), under this process's
    CROWD_DUCKDB_MEMORY_LIMIT: what the limit costs the presence count at this size."""
    import threading

    import dagster as dg

    from crowd_platform.common.settings import get_settings
    from crowd_platform.common.warehouse import memory_limit
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import RunSummary, _definitions, _execute, run_tags

    settings = get_settings(home)
    instance = get_instance(settings)
    spill, stop = [0], threading.Event()

    def sample_spill() -> None:  # the private engine's spill folders (staging/.spill-*)
        while not stop.wait(1.0):
            spill[0] = max(spill[0], sum(_du_bytes(settings.staging).values()) if settings.staging.exists() else 0)

    sampler = threading.Thread(target=sample_spill, daemon=True)
    sampler.start()
    started = time.perf_counter()
    ok = _execute(_definitions(), instance, "window_job", RunSummary(), log, "bts_presence again",
                  partition_key=WINDOW_START.strftime("%Y-%m-%d-%H:%M"), asset_selection=[dg.AssetKey("bts_presence")],
                  tags=run_tags(settings.purpose, "bench:national_window"))
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if not ok:
        raise RuntimeError("bts_presence re-run failed")
    run = instance.get_runs(limit=1)[0]
    step = next(stat for stat in instance.get_run_step_stats(run.run_id) if stat.step_key == "bts_presence")
    return {"duckdb_memory_limit": memory_limit(), "bts_presence_s": round(step.end_time - step.start_time, 2),
            "run_wall_s": round(wall, 1), "peak_rss_mb": _peak_mb(), "staging_peak_gb": round(spill[0] / 1e9, 2),
            "load_average": [round(value, 2) for value in os.getloadavg()]}


def _child(phase: str, args, home: Path, env: dict | None = None) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--home", str(home), "--events", str(args.events),
               "--cells", str(args.cells), "--seed", str(args.seed)]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False, env={**os.environ, **(env or {})})
    if completed.returncode != 0:
        raise SystemExit(f"{phase} failed (exit {completed.returncode})")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _du_bytes(path: Path) -> dict:
    sizes = {}
    for child in sorted(path.iterdir()):
        total = 0
        for file in ([child] if child.is_file() else child.rglob("*")):
            try:
                if file.is_file() and not file.is_symlink():
                    total += file.stat().st_size
            except FileNotFoundError:
                pass
        sizes[child.name] = total
    return sizes


# ------------------------------------------------------------------ timed window (this process)
def timed_window(home: Path) -> dict:
    import duckdb

    from crowd_platform.common.settings import get_settings
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import _definitions, run_tags

    settings = get_settings(home)
    instance = get_instance(settings)
    defs = _definitions()
    tags = run_tags(settings.purpose, "bench:national_window", trigger="sensor")
    rss_before = _peak_mb()
    load_before = [round(value, 2) for value in os.getloadavg()]
    import threading

    peak_disk, stop = [0], threading.Event()

    def sample_disk() -> None:  # the home's size every 2 s during the run (raw, staging, lake grow)
        while not stop.wait(2.0):
            peak_disk[0] = max(peak_disk[0], sum(_du_bytes(home).values()))

    sampler = threading.Thread(target=sample_disk, daemon=True)
    landed_at = land(home.parent / "incoming", settings.landing)
    sampler.start()
    try:
        measured = run_window(defs, instance, settings, tags, landed_at)
    finally:
        stop.set()
        sampler.join()
    measured["load_average_before"] = load_before
    measured["home_disk_gb_peak_sampled"] = round(peak_disk[0] / 1e9, 2)
    measured["peak_rss_mb_before_run"] = rss_before
    measured["peak_rss_mb"] = _peak_mb()
    _require_accepted(settings)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    # Inside operator_drops: drops are received (sha256, raw copy) one after another, parsed and checked
    # side by side, then given their verdicts one after another (validated_at): seconds after landing.
    measured["drops"] = [dict(zip(("operator", "feed", "status", "rows", "received_s", "validated_s"), row))
                         for row in con.execute(
        "SELECT operator, feed, status, row_count, round(epoch(received_at) - ?, 1), round(epoch(validated_at) - ?, 1) "
        "FROM drops WHERE feed = 'events' ORDER BY received_at", [landed_at, landed_at]).fetchall()]
    measured["bts_presence_rows"] = con.execute("SELECT count(*) FROM bts_presence").fetchone()[0]
    measured["district_density_rows"] = con.execute("SELECT count(*) FROM district_density").fetchone()[0]
    measured["alerts"] = con.execute("SELECT count(*) FROM crowd_alerts").fetchone()[0]
    con.close()
    return measured


def _shares(steps: dict) -> dict:
    """Step seconds grouped: ingest (operator_drops, staged_events), presence, density, alerts+broadcast, checks."""
    groups = {"ingest": 0.0, "presence": 0.0, "density": 0.0, "alerts_broadcast": 0.0, "asset_checks": 0.0}
    assets = {"operator_drops": "ingest", "staged_events": "ingest", "bts_presence": "presence",
              "district_density": "density", "crowd_alerts": "alerts_broadcast", "broadcast_requests": "alerts_broadcast"}
    for key, seconds in steps.items():
        groups[assets.get(key, "asset_checks")] += seconds
    total = sum(groups.values())
    return {name: {"s": round(value, 2), "share": round(value / total, 3) if total else None} for name, value in groups.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000_000, help="events in the window, all operators")
    parser.add_argument("--cells", type=int, default=500_000, help="cells of the synthetic national registry")
    parser.add_argument("--seed", type=int, default=20200402)
    parser.add_argument("--workdir", help="working folder (default: a new one under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the home at the end")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--presence-limits", default="",
                        help="after the timed window, run bts_presence alone again under each of these "
                             "CROWD_DUCKDB_MEMORY_LIMITs, comma-separated (e.g. 6GB,14GB), each in its own process")
    parser.add_argument("--phase", choices=("setup", "drops", "presence"), help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        home = Path(args.home)
        _home_env(home)
        phases = {"setup": lambda: phase_setup(args, home), "drops": lambda: phase_drops(args, home),
                  "presence": lambda: phase_presence(home)}
        outcome = phases[args.phase]()
        print(json.dumps(outcome))
        return 0

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_national_"))
    if workdir.exists() and any(workdir.iterdir()):
        raise SystemExit(f"{workdir} is not empty")
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    _home_env(home)
    began = time.time()
    try:
        log(f"set-up: {args.cells:,}-cell synthetic registry, cell-list drops, geography_job (child process)")
        setup = _child("setup", args, home)
        log(f"set-up done: process_pending {setup['process_pending_s']} s, cells accepted {setup['cells_accepted']}")
        log(f"drops: {args.events:,} events of {len(OPERATORS)} operators (child process)")
        drops = _child("drops", args, home)
        disk_drops = sum(_du_bytes(workdir / "incoming").values())
        log("timed: land -> landing sensor -> window_job (this process)")
        window = timed_window(home)
        disk = _du_bytes(home)
        presence_again = [_child("presence", args, home, {"CROWD_DUCKDB_MEMORY_LIMIT": limit.strip()})
                          for limit in args.presence_limits.split(",") if limit.strip()]
        from crowd_platform.common.settings import get_settings
        from crowd_platform.common.warehouse import memory_limit

        settings = get_settings(home)
        report = {
            "benchmark": "national window: drops landed -> window_job run end (landing sensor, in-process run)",
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([".venv/bin/python", "bench/bench_national_window.py", *sys.argv[1:]]),
            "machine": {"cpu_count": os.cpu_count(),
                        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                        "load_average_at_end": [round(value, 2) for value in os.getloadavg()]},
            "instance": "embedded SQLite, window_job executed in process (execute_in_process: in-process executor, "
                        "every step in this process)",
            "warehouse": "embedded DuckDB file",
            "duckdb_memory_limit": memory_limit(),
            "parse_workers": settings.config.ingestion.parse_workers,
            "config": str(settings.config_path),
            "window": WINDOW_START.isoformat(),
            "events": args.events,
            "cells_synthetic": args.cells,
            "setup_untimed": setup,
            "drops_generated": drops,
            "drop_files_bytes": disk_drops,
            "window_run": window,
            "step_groups": _shares(window["steps_s"]),
            "bts_presence_again": presence_again,
            "home_disk_bytes_after": disk,
            "home_disk_gb_after": round(sum(disk.values()) / 1e9, 2),
            "baseline": "none (no history): alerts are not evaluated, the alert steps run on no baseline",
            "total_wall_s": round(time.time() - began, 1),
        }
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
