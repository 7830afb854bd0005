"""Fixtures of the API tests: a warehouse with the real schema and published rows written
directly (published_warehouse.py), tokens issued through the real code, and a real uvicorn server
in a subprocess (`python -m crowd_platform serve --port 0`) on loopback, spoken to with requests.

A subprocess, not a thread: the tests write the warehouse read-write while the server attaches it
read-only, and DuckDB refuses two configurations of one file inside one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from crowd_platform_tests.api import published_warehouse

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ApiServer:
    home: Path
    url: str
    process: subprocess.Popen
    tokens: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def get(self, path: str, token: str | None = "all", **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(token, token)}"
        return requests.get(self.api + path, headers=headers, timeout=30, **kwargs)

    def post(self, path: str, token: str | None = "all", **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(token, token)}"
        return requests.post(self.api + path, headers=headers, timeout=30, **kwargs)


def settings_for(home: Path, contracts: Path | None = None):
    from crowd_platform.common.settings import Settings, get_settings

    settings = get_settings(home)
    if contracts is not None:
        settings = Settings(settings.home, settings.config, settings.config_path, contracts, settings.storage_url,
                            settings.alert_rules_override, settings.witness_override)
    return settings


def issue_tokens(home: Path, contracts: Path | None = None) -> dict[str, str]:
    from crowd_platform.api.tokens import issue

    settings = settings_for(home, contracts)
    return {
        "all": issue(settings, "all-reader", None, all_datasets=True, actor="pytest")[0],
        "density": issue(settings, "density-reader", ["district_density_published"], actor="pytest")[0],
        "alerts": issue(settings, "alerts-reader", ["crowd_alerts_published", "alert_transitions_published"],
                        actor="pytest")[0],
    }


def start_server(home: Path, refresh_interval: float = 0.3, contracts: Path | None = None) -> tuple[str, subprocess.Popen]:
    env = dict(os.environ, CROWD_HOME=str(home), PYTHONUNBUFFERED="1")
    if contracts is not None:
        env["CROWD_CONTRACTS"] = str(contracts)
    process = subprocess.Popen(
        [sys.executable, "-m", "crowd_platform", "serve", "--home", str(home), "--host", "127.0.0.1", "--port", "0",
         "--refresh-interval", str(refresh_interval)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"server did not start: {line!r} {process.stderr.read()[-2000:]}")
    url = line.split("listening on ")[1].split()[0]
    deadline = time.monotonic() + 60  # generous: CI machines are loaded
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/api/v1/health", timeout=5).status_code == 200:
                return url, process
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server never became healthy")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()  # SIGTERM: uvicorn shuts down, the audit writer drains and fsyncs
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def make_server(home: Path, contracts: Path | None = None, **build) -> ApiServer:
    info = published_warehouse.build(home / "warehouse.duckdb", **build)
    tokens = issue_tokens(home, contracts)
    url, process = start_server(home, contracts=contracts)
    return ApiServer(home=home, url=url, process=process, tokens=tokens, info=info)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory):
    """One server per test module over a 40-kelurahan, 4-window warehouse (read-only tests)."""
    server = make_server(tmp_path_factory.mktemp("api_home"))
    yield server
    stop_server(server.process)


@pytest.fixture
def fresh_server(tmp_path: Path):
    """A server of its own, for tests that change the warehouse or the tokens."""
    server = make_server(tmp_path / "home")
    yield server
    stop_server(server.process)


def read_audit(home: Path) -> list[dict]:
    import json

    records = []
    for path in sorted((home / "api_audit").glob("*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return records
