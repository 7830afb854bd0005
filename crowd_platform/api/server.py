"""Run the published API on uvicorn: blocking (``crowd-platform serve``) or in a background thread
(tests, the demo). Loopback by default; one worker (responses are cached per snapshot version, and
the in-memory copy lives in the process)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from crowd_platform.common.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def _config(settings: Settings, refresh_interval_s: float, token_check_s: float, log_level: str):
    import uvicorn

    from crowd_platform.api.app import create_app

    app = create_app(settings, refresh_interval_s=refresh_interval_s, token_check_s=token_check_s)
    return uvicorn.Config(app, lifespan="on", log_level=log_level, access_log=False, loop="auto", http="auto",
                          timeout_keep_alive=30, backlog=2048, server_header=False, date_header=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, refresh_interval_s: float = 2.0,
          token_check_s: float = 0.5, log_level: str = "warning", announce=print) -> None:
    """Serve until interrupted (SIGINT/SIGTERM). ``port`` 0 picks a free port; ``announce`` gets
    the one line naming the address (the tests read it)."""
    import uvicorn

    sock = _bind(host, port)
    actual = sock.getsockname()[1]
    server = uvicorn.Server(_config(settings, refresh_interval_s, token_check_s, log_level))
    addresses = api_addresses(settings, host, actual)
    announce(f"crowd-platform API listening on {addresses['base']} (map {addresses['map']})")
    server.run(sockets=[sock])


@dataclass
class RunningServer:
    """A server running in a daemon thread; ``stop()`` shuts it down (lifespan shutdown included)."""

    host: str
    port: int
    url: str
    server: Any
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_server(settings: Settings, host: str = DEFAULT_HOST, port: int = 0, *, refresh_interval_s: float = 2.0,
                 token_check_s: float = 0.5, log_level: str = "warning", ready_timeout_s: float = 30.0) -> RunningServer:
    """Start the API in a background thread of this process and wait until it accepts requests.

    The server opens the warehouse read-only for each refresh; in the same process, do not keep a
    read-write connection to the warehouse open while it runs (DuckDB refuses two configurations
    of one file in a process): tests use a subprocess (`crowd-platform serve --port 0`) instead.
    """
    import uvicorn

    sock = _bind(host, port)
    actual = sock.getsockname()[1]
    server = uvicorn.Server(_config(settings, refresh_interval_s, token_check_s, log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="crowd-platform-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    return RunningServer(host, actual, f"http://{_url_host(host)}:{actual}", server, thread)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def api_addresses(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  token: str | None = None) -> dict[str, str]:
    """Where things are, for the demo's summary: base URL, the main routes, the map page (with
    ``#token=`` when a token is given: a URL fragment never reaches the server or its logs),
    the audit folder and the tokens file."""
    from crowd_platform.api.access_log import audit_dir
    from crowd_platform.api.tokens import tokens_file

    base = f"http://{_url_host(host)}:{port}"
    api = base + "/api/v1"
    return {
        "base": base,
        "api": api,
        "health": api + "/health",
        "windows": api + "/windows",
        "density": api + "/density?level=<level>&window=<ISO UTC>",
        "density_geojson": api + "/density.geojson?level=<level>&window=<ISO UTC>",
        "alerts": api + "/alerts",
        "alerts_geojson": api + "/alerts.geojson",
        "camara": api + "/camara/population-density/v0.3/retrieve",
        "export": api + "/exports/density.parquet?level=<level>&start=<ISO>&end=<ISO>",
        "map": base + "/map/" + (f"#token={token}" if token else ""),
        "audit_dir": str(audit_dir(settings.home)),
        "tokens_file": str(tokens_file(settings)),
        "docs": "docs/api.md",
    }
