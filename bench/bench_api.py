"""Load test of the published API (docs/performance.md, "Published API").

A Jakarta-scale window set: a warehouse with the real schema and published rows written directly
(crowd_platform_tests/api/published_warehouse.py): ~300 kelurahan with polygons, their kecamatan
and kab/kota, one day of 15-minute windows (96). The server runs as in production
(`crowd-platform serve`, one uvicorn worker, a subprocess) on loopback; this process runs N
concurrent keep-alive HTTP/1.1 clients (asyncio on raw sockets, spread over two processes: a light
client, so the two cores measure the server more than the load generator) for D seconds, half of the requests GET /density
(random window and level) and half POST the CAMARA retrieve (random area and hour). Before the
load, a few requests on a cold cache measure the uncached cost of each route.

    .venv/bin/python bench/bench_api.py [--clients 50] [--seconds 60] [--kelurahan 300]

JSON to bench/results/api_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crowd_platform_tests.api import published_warehouse  # noqa: E402

LEVELS = ("kelurahan", "kelurahan", "kecamatan", "kabkota")  # the map and most clients ask for the finest level


def _start_server(home: Path) -> tuple[str, subprocess.Popen]:
    env = dict(os.environ, CROWD_HOME=str(home), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "crowd_platform", "serve", "--home", str(home), "--port", "0"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "listening on" not in line:
        raise SystemExit(f"server did not start: {line} {process.stderr.read()[-2000:]}")
    url = line.split("listening on ")[1].split()[0]
    import requests

    for _ in range(300):
        try:
            if requests.get(url + "/api/v1/health", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    return url, process


def _requests(token: str, windows: list[datetime], seed: int):
    rng = random.Random(seed)
    hours = sorted({w.replace(minute=0) for w in windows})
    centres = [(-6.10 - rng.random() * 0.15, 106.70 + rng.random() * 0.22) for _ in range(20)]
    auth = f"Authorization: Bearer {token}\r\n"
    while True:
        if rng.random() < 0.5:
            window = rng.choice(windows).strftime("%Y-%m-%dT%H:%M:%SZ")
            level = rng.choice(LEVELS)
            yield "density", (f"GET /api/v1/density?level={level}&window={window} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n").encode()
        else:
            lat, lon = rng.choice(centres)
            hour = rng.choice(hours)
            body = json.dumps({"area": {"areaType": "CIRCLE", "center": {"latitude": round(lat, 4), "longitude": round(lon, 4)},
                                        "radius": 2000},
                               "startTime": hour.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "endTime": (hour + timedelta(minutes=59)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "precision": 7}).encode()
            yield "camara", (f"POST /api/v1/camara/population-density/v0.3/retrieve HTTP/1.1\r\nHost: bench\r\n{auth}"
                             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return status, length


async def _client(host: str, port: int, token: str, windows, seed: int, stop_at: float, out: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    generator = _requests(token, windows, seed)
    try:
        while time.perf_counter() < stop_at:
            kind, payload = next(generator)
            started = time.perf_counter()
            try:
                writer.write(payload)
                status, size = await _read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                out["errors"].append(type(error).__name__)
                reader, writer = await asyncio.open_connection(host, port)
                continue
            elapsed = (time.perf_counter() - started) * 1000
            out[kind].append(elapsed)
            out["bytes"] += size
            if status != 200:
                out["errors"].append(status)
    finally:
        writer.close()


def _load_process(job) -> dict:
    """One load-generator process: its share of the clients on one asyncio loop."""
    host, port, token, windows, seeds, seconds = job
    out = {"density": [], "camara": [], "errors": [], "bytes": 0}

    async def run() -> None:
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(_client(host, port, token, windows, seed, stop_at, out) for seed in seeds))

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    cpu = time.process_time()
    asyncio.run(run())
    out["client_cpu_s"] = time.process_time() - cpu
    return out


def _summary(values: list[float]) -> dict:
    if not values:
        return {"requests": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2)
    return {"requests": len(values), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "max_ms": round(ordered[-1], 2), "mean_ms": round(statistics.fmean(values), 2)}


def _cold(url: str, token: str, windows) -> dict:
    import requests

    headers = {"Authorization": f"Bearer {token}"}
    out = {}
    for name, call in (
        ("density_kelurahan", lambda w: requests.get(url + "/api/v1/density", headers=headers, timeout=30,
                                                     params={"level": "kelurahan", "window": w})),
        ("density_geojson_kelurahan", lambda w: requests.get(url + "/api/v1/density.geojson", headers=headers, timeout=30,
                                                             params={"level": "kelurahan", "window": w})),
        ("camara_circle_2km", lambda w: requests.post(url + "/api/v1/camara/population-density/v0.3/retrieve",
                                                      headers=headers, timeout=30, json={
                                                          "area": {"areaType": "CIRCLE", "center": {"latitude": -6.17,
                                                                                                    "longitude": 106.81},
                                                                   "radius": 2000},
                                                          "startTime": w, "endTime": w, "precision": 7})),
    ):
        times = []
        for window in windows[-5:]:
            iso = window.strftime("%Y-%m-%dT%H:%M:%SZ")
            started = time.perf_counter()
            response = call(iso)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
        out[name] = {"uncached_median_ms": round(statistics.median(times), 1), "uncached_max_ms": round(max(times), 1)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--kelurahan", type=int, default=300)
    parser.add_argument("--windows", type=int, default=96)
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes sharing the clients")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "api_load.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        info = published_warehouse.build(home / "warehouse.duckdb", kelurahan=args.kelurahan, windows=args.windows)
        build_s = time.perf_counter() - started
        from crowd_platform.api.tokens import issue
        from crowd_platform.common.settings import get_settings

        token = issue(get_settings(home), "bench", ["district_density_published"], actor="bench")[0]
        url, process = _start_server(home)
        try:
            host, port = url.removeprefix("http://").split(":")
            cold = _cold(url, token, info["windows"])
            from concurrent.futures import ProcessPoolExecutor

            seeds = [list(range(args.clients))[index::args.processes] for index in range(args.processes)]
            begin = time.perf_counter()
            with ProcessPoolExecutor(args.processes) as pool:
                parts = list(pool.map(_load_process, [(host, int(port), token, info["windows"], part, args.seconds)
                                                      for part in seeds]))
            elapsed = time.perf_counter() - begin
            out = {"density": [], "camara": [], "errors": [], "bytes": 0, "client_cpu_s": 0.0}
            for part in parts:
                for key in ("density", "camara", "errors"):
                    out[key].extend(part[key])
                out["bytes"] += part["bytes"]
                out["client_cpu_s"] += part["client_cpu_s"]
        finally:
            process.terminate()
            process.wait(timeout=20)
        audit_lines = sum(len(path.read_text().splitlines()) for path in (home / "api_audit").glob("*.jsonl"))

    total = out["density"] + out["camara"]
    result = {
        "benchmark": "bench/bench_api.py",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "data": {"kelurahan": args.kelurahan, "districts": len(info["codes"]) + len(info["kecamatan"]) + 1,
                 "windows": args.windows, "warehouse_build_s": round(build_s, 1)},
        "server": "crowd-platform serve: uvicorn, 1 worker, responses cached per (route, parameters, snapshot version)",
        "load": {"clients": args.clients, "client_processes": args.processes, "seconds": round(elapsed, 1),
                 "client_cpu_s": round(out["client_cpu_s"], 1), "mix": "50 % GET /density (random window, level), "
                 "50 % POST CAMARA retrieve (20 circles of 2 km x 24 hours)"},
        "cold_cache": cold,
        "all": {**_summary(total), "requests_per_s": round(len(total) / elapsed, 1), "errors": len(out["errors"]),
                "mb_sent": round(out["bytes"] / 1e6, 1)},
        "density": _summary(out["density"]),
        "camara": _summary(out["camara"]),
        "audit_records_written": audit_lines,
        "target": {"p95_ms": 100, "errors": 0},
    }
    result["target_met"] = result["all"]["p95_ms"] < 100 and result["all"]["errors"] == 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
