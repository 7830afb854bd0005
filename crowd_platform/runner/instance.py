"""The Dagster instance of the embedded default: SQLite under CROWD_HOME/dagster_home.

`crowd-platform run`, `demo` and `make dev` share it, so runs started from the CLI show up in
the UI. Writers of the DuckDB warehouse share the pool `duckdb_warehouse`, limited to 1 here
and in deploy/dagster.yaml (DuckDB allows one writing process per file).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

from crowd_platform.common.settings import Settings

INSTANCE_CONFIG = {
    "telemetry": {"enabled": False},
    "concurrency": {
        "pools": {"default_limit": 1},
        "runs": {"max_concurrent_runs": 4},
    },
    "run_monitoring": {"enabled": True},
}


def ensure_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME if set, else CROWD_HOME/dagster_home with our dagster.yaml (written once)."""
    configured = os.environ.get("DAGSTER_HOME")
    home = Path(configured) if configured else settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    if not config_file.exists():
        config_file.write_text(yaml.safe_dump(INSTANCE_CONFIG, sort_keys=False), encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(settings: Settings) -> dg.DagsterInstance:
    ensure_dagster_home(settings)
    return dg.DagsterInstance.get()
