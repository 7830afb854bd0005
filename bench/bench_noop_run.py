"""A no-op `crowd-platform run`: the shortcut against the full path, in the same script.

Set-up (untimed): a small simulated home (one operator, one UTC hour), processed once. Then,
alternating, `crowd-platform run` with nothing pending (the shortcut: landing empty, no mark of
an unfinished pass) and the same command forced down the full path (a mark left as a killed pass
would leave it: import the definitions, open the instance, recovery, one sensor tick). Target
(issue 18): <= 1 s.

    .venv/bin/python bench/bench_noop_run.py [--repeats 5]

Results: bench/results/noop_run.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLI = [sys.executable, "-m", "crowd_platform", "run"]


def _timed_run(home: Path) -> tuple[float, str]:
    env = {**os.environ, "CROWD_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    started = time.perf_counter()
    done = subprocess.run(CLI, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - started, done.stdout.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "noop_run.json"))
    args = parser.parse_args()

    from crowd_platform.common.settings import get_settings
    from crowd_platform.runner import idle
    from crowd_platform.simulator import simulate

    with tempfile.TemporaryDirectory(prefix="bench-noop-") as folder:
        home = Path(folder) / "home"
        simulate(home, start=date(2020, 3, 30), days=1, subscribers=2_000, seed=7, hours=(4, 5), gatherings=[],
                 operators=["telkomsel"])
        first, _ = _timed_run(home)  # processes the hour's drops
        settings = get_settings(str(home))
        shortcut, full = [], []
        for _ in range(args.repeats):
            seconds, line = _timed_run(home)
            assert "nothing pending" in line, line
            shortcut.append(seconds)
            idle.mark_path(settings).write_text("{}", encoding="utf-8")
            seconds, line = _timed_run(home)
            assert line.startswith("done: 0 runs"), line
            full.append(seconds)
    result = {
        "benchmark": "noop_run",
        "repeats": args.repeats,
        "first_run_with_drops_s": round(first, 2),
        "noop_shortcut_s": {"median": round(statistics.median(shortcut), 3), "all": [round(x, 3) for x in shortcut]},
        "noop_full_path_s": {"median": round(statistics.median(full), 3), "all": [round(x, 3) for x in full]},
        "target_s": 1.0,
        "load_average": os.getloadavg(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["speedup"] = round(result["noop_full_path_s"]["median"] / result["noop_shortcut_s"]["median"], 1)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
