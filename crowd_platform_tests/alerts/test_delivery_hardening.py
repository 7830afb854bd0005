"""Broadcast delivery never follows a redirect and never posts in clear text off the machine.

Real HTTP servers on loopback: one answers 307 pointing at the other, which must receive nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from crowd_platform.alerts.assets import broadcast_requests, crowd_alerts
from crowd_platform.alerts.delivery import HttpTarget, endpoint_problem, post_with_retries
from crowd_platform.common.partitions import range_tags, window_key
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform_tests.support.alerts_warehouse import alerts_platform, window

WINDOWS = 12
K1 = {1: 3500.0, 2: 3500.0, 3: 4500.0}   # kelurahan K1: an alert opens, then escalates


class _Recorder(ThreadingHTTPServer):
    def __init__(self, answer: int, location: str | None = None):
        self.answer, self.location, self.received = answer, location, []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/broadcast"


class _Handler(BaseHTTPRequestHandler):
    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.received.append((self.command, self.path, self.rfile.read(length)))
        self.send_response(self.server.answer)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = do_PUT = _any

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


@contextmanager
def _serving(answer: int, location: str | None = None) -> Iterator[_Recorder]:
    server = _Recorder(answer, location)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_a_failure_and_never_followed(status):
    with _serving(202) as elsewhere, _serving(status, location=elsewhere.url) as endpoint:
        sleeps = []
        result = post_with_retries(HttpTarget(url=endpoint.url, timeout_s=2, max_attempts=3, backoff_base_s=0.01),
                                   {"request_id": "r1"}, "r1", sleep=sleeps.append)
        assert not result.delivered and result.delivered_at is None
        assert result.http_status == str(status) and result.attempts == 1 and not sleeps  # not retried in the call
        assert "redirect" in result.reason and "\n" not in result.reason
        assert len(endpoint.received) == 1 and endpoint.received[0][0] == "POST"
        assert elsewhere.received == []  # the other host got nothing


@pytest.mark.parametrize("url", ["http://example.org/broadcast", "http://10.0.0.5:8080/x", "http://[2001:db8::1]/x",
                                 "ftp://127.0.0.1/x", "https:///nohost", "http://127.0.0.1@example.org/x",
                                 "http://localhost.example.org/x"])
def test_non_https_endpoint_is_refused_before_any_connection(url, monkeypatch):
    import requests

    def no_connection(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(requests.Session, "send", no_connection)
    result = post_with_retries(HttpTarget(url=url, max_attempts=3), {"x": 1}, "key", sleep=lambda _: None)
    assert not result.delivered and result.attempts == 0 and result.http_status.startswith("refused:")
    assert result.reason and "\n" not in result.reason


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/x", "http://127.8.9.10/x", "http://[::1]:8080/x", "http://localhost/x",
                                 "http://LOCALHOST./x", "https://operator.example.org/x"])
def test_https_or_loopback_endpoints_are_allowed(url):
    assert endpoint_problem(url) is None


def test_loopback_http_still_delivers():
    with _serving(202) as endpoint:
        result = post_with_retries(HttpTarget(url=endpoint.url, timeout_s=2), {"request_id": "r2"}, "r2")
    assert result.delivered and result.http_status == "202" and result.reason is None
    assert len(endpoint.received) == 1


def _configure(tmp_path, monkeypatch, url: str, max_attempts: int = 3) -> CrowdPlatform:
    return alerts_platform(tmp_path, monkeypatch, windows=WINDOWS, kelurahan_k1=K1, url=url, max_attempts=max_attempts)


def _run(crowd, instance, assets):
    tags = range_tags(window_key(window(0)), window_key(window(WINDOWS - 1)))
    return dg.materialize(assets, resources={"crowd": crowd}, instance=instance, tags=tags, raise_on_error=False)


def _requests(crowd) -> list[tuple]:
    with crowd.warehouse(read_only=True) as con:
        return con.execute("SELECT request_id, http_status, attempts, delivered_at FROM broadcast_requests").fetchall()


def _audit_actions(crowd) -> list[str]:
    with crowd.warehouse(read_only=True) as con:
        return [row[0] for row in con.execute("SELECT action FROM audit_log WHERE object_kind = 'broadcast_request'").fetchall()]


def test_redirected_requests_are_recorded_failed_not_delivered(tmp_path, monkeypatch):
    with _serving(202) as elsewhere, _serving(307, location=elsewhere.url) as endpoint:
        crowd = _configure(tmp_path, monkeypatch, endpoint.url, max_attempts=3)
        with dg.instance_for_test() as instance:
            _run(crowd, instance, [crowd_alerts])
            _run(crowd, instance, [broadcast_requests])
        rows = _requests(crowd)
        assert rows and all(row[1] == "307" and row[2] == 1 and row[3] is None for row in rows)
        assert len(endpoint.received) == len(rows) and elsewhere.received == []
    actions = _audit_actions(crowd)
    assert "broadcast_delivered" not in actions and actions.count("broadcast_delivery_failed") == len(rows)


def test_plain_http_endpoint_is_recorded_refused(tmp_path, monkeypatch):
    crowd = _configure(tmp_path, monkeypatch, "http://operator.example.org/broadcast")
    with dg.instance_for_test() as instance:
        _run(crowd, instance, [crowd_alerts])
        _run(crowd, instance, [broadcast_requests])
    rows = _requests(crowd)
    assert rows and all(row[1] == "refused:plain-http" and row[2] == 0 and row[3] is None for row in rows)
