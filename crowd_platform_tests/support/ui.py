"""Helpers for tests in a real browser: a Dagster webserver on loopback and Debian's chromium.

No browser download: Playwright drives /usr/bin/chromium (package `chromium`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags that keep a root, offline, headless chromium quiet (no sandbox as root, no background
# network calls that this machine refuses).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]

requires_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian chromium is not installed (CI installs it from .ci/run)",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def dagster_webserver(dagster_home: Path, crowd_home: Path, read_only: bool, timeout_s: float = 120.0):
    """Start `dagster-webserver -w workspace.yaml` on 127.0.0.1 and yield its base URL."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("dagster-webserver")),
        "-w", str(PROJECT_ROOT / "workspace.yaml"),
        "-h", "127.0.0.1", "-p", str(port),
    ]
    if read_only:
        command.append("--read-only")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "CROWD_HOME": str(crowd_home)}
    log_path = crowd_home / f"webserver-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagster-webserver did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        wait_for_location(base, deadline)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def wait_for_location(base: str, deadline: float) -> None:
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {"
             " __typename ... on PythonError { message stack } } } } } }")
    while True:
        entries = graphql(base, query).get("data", {}).get("workspaceOrError", {}).get("locationEntries", [])
        loaded = [entry["locationOrLoadError"] for entry in entries if entry.get("locationOrLoadError")]
        states = [outcome["__typename"] for outcome in loaded]
        if states and all(state == "RepositoryLocation" for state in states):
            return
        errors = [outcome for outcome in loaded if outcome["__typename"] == "PythonError"]
        if errors:
            # The load error itself, so that a CI log says why (the state alone said nothing).
            detail = "\n".join(error.get("message", "") + "".join(error.get("stack") or [])[-3000:] for error in errors)
            raise RuntimeError(f"code location failed to load: {detail}")
        if time.monotonic() > deadline:
            raise RuntimeError("code location did not load in time")
        time.sleep(1)


@contextmanager
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()
