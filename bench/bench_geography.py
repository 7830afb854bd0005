"""Benchmark: national tessellation and apportionment (time and peak memory per case).

Cases: the national OpenCelliD file (~25 k cells) and synthetic national registries of N
cells (real cell positions jittered by a few km, operators drawn by market share from the
contracts). Each case runs in its own process so peak RSS is that case's alone. Districts:
the national kecamatan file (7 068 units), CROWD_CONFIG=config/platform_national.yaml.

    .venv/bin/python bench/bench_geography.py                        # reference + 50k + 100k
    .venv/bin/python bench/bench_geography.py --cells 2000           # smoke: 2 000 reference cells
    .venv/bin/python bench/bench_geography.py --synthetic 500000     # the big case

Results: bench/results/geography.json (one entry per case, merged with earlier runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "geography.json"
NATIONAL_CONFIG = ROOT / "config" / "platform_national.yaml"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_registry(reference, contracts_dir: Path, cells: int, seed: int, site_decimals: int = 4):
    """A synthetic national registry of ``cells`` cells (also bench/bench_national_window.py).

    Real cell positions (``reference``: the OpenCelliD registry, columns lon and lat) sampled with
    replacement and jittered by ~3 km, which keeps the urban/rural density of the real network;
    operators drawn by the market shares of their data contracts. Columns: operator, cell_id
    (510-<the operator's first contract MNC>-<lac>-<ci>, unique), lon, lat, radio, site_id.
    """
    import numpy as np
    import pandas as pd

    from crowd_platform.common.contracts import operator_contracts
    from crowd_platform.geography import registry as cell_registry

    rng = np.random.default_rng(seed)
    base = reference.sample(n=cells, replace=True, random_state=seed)
    contracts = operator_contracts(contracts_dir)
    shares = {op: c.market_share or 0.0 for op, c in contracts.items()}
    operators = list(shares)
    probabilities = np.array([shares[op] for op in operators]) / sum(shares.values())
    operator = rng.choice(operators, size=cells, p=probabilities)
    mnc = {op: (contracts[op].mnc or ("00",))[0] for op in operators}
    frame = pd.DataFrame({
        "operator": operator,
        "cell_id": [f"510-{mnc[op]}-{index // 65536}-{index}" for index, op in enumerate(operator)],
        # ~3 km jitter around real cells keeps the urban/rural density of the real network.
        "lon": base["lon"].to_numpy() + rng.normal(0, 0.027, cells),
        "lat": base["lat"].to_numpy() + rng.normal(0, 0.027, cells),
        "radio": "LTE",
    })
    frame["site_id"] = cell_registry.site_ids(frame["operator"].tolist(), frame["lon"].to_numpy(),
                                              frame["lat"].to_numpy(), site_decimals)
    return frame


def run_case(kind: str, cells: int, seed: int) -> dict:
    """One case in this process; returns timings (s) and peak RSS (MB)."""
    os.environ["CROWD_CONFIG"] = str(NATIONAL_CONFIG)
    sys.path.insert(0, str(ROOT))
    from crowd_platform.geography import boundaries, coverage as coverage_model, registry as cell_registry
    from crowd_platform.common.settings import get_settings

    settings = get_settings(Path(os.environ.get("TMPDIR", "/tmp")) / "crowd_bench_home")  # nothing is written there
    config = settings.config.geography
    timings: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - start, 3)
        print(f"  {kind}/{cells or 'all'} {name}: {timings[name]} s", file=sys.stderr, flush=True)
        return value

    districts, _ = timed("districts", lambda: boundaries.build_districts(config))
    valid_from = datetime(2020, 3, 1, tzinfo=timezone.utc)
    registry = timed("registry", lambda: cell_registry.registry_from_opencellid(
        config.cells_reference, settings.contracts_dir, valid_from, config.site_decimals))
    if kind == "reference" and cells:
        registry = registry.head(cells)
    if kind == "synthetic":
        registry = timed("synthesize", lambda: synthetic_registry(registry, settings.contracts_dir, cells, seed,
                                                                  config.site_decimals))
    finest = districts[districts["level_rank"] == 0]
    outside = timed("outside_area_check", lambda: cell_registry.outside_area_mask(
        registry["lon"].to_numpy(), registry["lat"].to_numpy(), finest, config.area_crs, config.area_buffer_m))
    registry = registry[~outside]
    sites = timed("sites", lambda: cell_registry.sites_of(registry))
    result = timed("tessellate_and_apportion", lambda: coverage_model.apportion(sites, districts, config))
    weight_sums = result.weights.groupby(["site_id", "scope"])["weight"].sum()
    return {
        "case": f"{kind}:{cells or 'all'}",
        "cells": int(len(registry)),
        "sites": int(len(sites)),
        "outside_area": int(outside.sum()),
        "districts_finest": int(len(finest)),
        "coverage_polygons": int(len(result.coverage)),
        "weight_rows": int(len(result.weights)),
        "max_weight_sum_error": float((weight_sums - 1).abs().max()),
        "seconds": timings,
        "total_seconds": round(sum(timings.values()), 3),
        "peak_rss_mb": round(_peak_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=0, help="use only the first N reference cells (smoke run)")
    parser.add_argument("--synthetic", default="50000,100000",
                        help="comma-separated synthetic registry sizes; empty for none (default 50000,100000)")
    parser.add_argument("--skip-reference", action="store_true", help="do not run the reference case")
    parser.add_argument("--seed", type=int, default=20200331)
    parser.add_argument("--one", nargs=2, metavar=("KIND", "CELLS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        print(json.dumps(run_case(args.one[0], int(args.one[1]), args.seed)))
        return 0

    cases = [] if args.skip_reference else [("reference", args.cells)]
    cases += [("synthetic", int(size)) for size in args.synthetic.split(",") if size.strip()]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"cases": {}}
    for kind, cells in cases:
        print(f"case {kind} {cells or 'all'} ...", flush=True)
        completed = subprocess.run([sys.executable, __file__, "--one", kind, str(cells), "--seed", str(args.seed)],
                                   capture_output=True, text=True, check=False)
        sys.stderr.write(completed.stderr)
        if completed.returncode != 0:
            print(f"case {kind} {cells} failed", file=sys.stderr)
            return completed.returncode
        outcome = json.loads(completed.stdout.strip().splitlines()[-1])
        outcome["measured_at"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        results["cases"][outcome["case"]] = outcome
        print(f"  {outcome['case']}: {outcome['total_seconds']} s, peak {outcome['peak_rss_mb']} MB, "
              f"{outcome['sites']} sites", flush=True)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
