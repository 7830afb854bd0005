"""broadcast_requests against a REAL HTTP server on loopback that fails now and then."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from crowd_platform.alerts.assets import broadcast_requests, crowd_alerts
from crowd_platform.alerts.checks import broadcast_outbox_private
from crowd_platform.alerts.delivery import HttpTarget, backoff_delay, post_with_retries, request_id_for
from crowd_platform.common.partitions import range_tags, window_key
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform_tests.support.alerts_warehouse import alerts_platform, window

WINDOWS = 12
K1 = {1: 3500.0, 2: 3500.0, 3: 4500.0}   # kelurahan K1: opened@2, escalated@3
S1 = {6: 400.0, 7: 400.0, 8: 400.0}      # site telkomsel:s1: opened@7


class FlakyOperator(ThreadingHTTPServer):
    """An operator endpoint: 503 for the first ``failures`` attempts of each key, then 202 once, then 409."""

    def __init__(self, failures: int):
        self.failures = failures
        self.attempts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.bodies: dict[str, dict] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/broadcast"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server API)
        server: FlakyOperator = self.server
        key = self.headers.get("Idempotency-Key", "")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.attempts[key] += 1
            if server.accepted[key]:
                status = 409
            elif server.attempts[key] <= server.failures:
                status = 503
            else:
                server.accepted[key] += 1
                server.bodies[key] = body
                status = 202
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def operator_server():
    servers = []

    def start(failures: int) -> FlakyOperator:
        server = FlakyOperator(failures)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _configure(tmp_path, monkeypatch, url: str | None, max_attempts: int = 5) -> CrowdPlatform:
    return alerts_platform(tmp_path, monkeypatch, windows=WINDOWS, kelurahan_k1=K1, site_s1=S1, url=url,
                           max_attempts=max_attempts)


def _run(crowd, instance, assets, raise_on_error=True):
    tags = range_tags(window_key(window(0)), window_key(window(WINDOWS - 1)))
    return dg.materialize(assets, resources={"crowd": crowd}, instance=instance, tags=tags, raise_on_error=raise_on_error)


def _requests(crowd):
    with crowd.warehouse(read_only=True) as con:
        return con.execute("SELECT request_id, alert_id, transition, operator, cell_ids, message_id, message_en, "
                           "outbox_path, http_status, attempts, delivered_at FROM broadcast_requests "
                           "ORDER BY request_id").fetchall()


def test_requests_delivered_exactly_once_across_reruns(tmp_path, monkeypatch, operator_server):
    server = operator_server(failures=2)
    crowd = _configure(tmp_path, monkeypatch, server.url)
    with dg.instance_for_test() as instance:
        assert _run(crowd, instance, [crowd_alerts]).success
        first = _run(crowd, instance, [broadcast_requests, broadcast_outbox_private])
        assert first.success
        rows = _requests(crowd)
        # K1 opened + escalated, site s1 opened; each for telkomsel and xl (xl:s2 covers K1 and is 230 m from s1).
        assert Counter((row[2], row[3]) for row in rows) == {("opened", "telkomsel"): 2, ("opened", "xl"): 2,
                                                            ("escalated", "telkomsel"): 1, ("escalated", "xl"): 1}
        assert all(row[8] == "202" and row[9] == 3 and row[10] is not None for row in rows)
        # Rerun the alerts and the broadcasts: same request ids, nothing sent again.
        assert _run(crowd, instance, [crowd_alerts]).success
        assert _run(crowd, instance, [broadcast_requests]).success
        assert _requests(crowd) == rows
    assert set(server.accepted) == {row[0] for row in rows}
    assert all(count == 1 for count in server.accepted.values())
    assert all(server.attempts[row[0]] == 3 for row in rows)
    with crowd.warehouse(read_only=True) as con:
        actions = Counter(row[0] for row in con.execute("SELECT action FROM audit_log").fetchall())
    assert actions["broadcast_requested"] == 6 and actions["broadcast_delivered"] == 6


def test_request_content_cells_messages_and_privacy(tmp_path, monkeypatch, operator_server):
    server = operator_server(failures=0)
    crowd = _configure(tmp_path, monkeypatch, server.url)
    with dg.instance_for_test() as instance:
        _run(crowd, instance, [crowd_alerts])
        _run(crowd, instance, [broadcast_requests])
    rows = _requests(crowd)
    by_key = {(row[2], row[3], len(row[4])): row for row in rows}
    outbox = crowd.settings.outbox
    files = sorted(outbox.glob("*/*.json"))
    assert len(files) == len(rows) == 6
    for row in rows:
        payload = json.loads(open(row[7], encoding="utf-8").read())
        assert payload == server.bodies[row[0]]  # the file and the POST carry the same request
        assert payload["request_id"] == request_id_for(row[1], row[2], window(2 if payload["level"] != "site" else 7)
                                                       if row[2] == "opened" else window(3), row[3])
        assert payload["message"]["id"] == row[5] and payload["message"]["en"] == row[6]
        value = payload["crowd_estimate"]["value"]
        assert value is None or value > crowd.settings.k_anonymity
        text = open(row[7], encoding="utf-8").read()
        assert not re.search(r"[0-9a-f]{64}", text), "no subscriber-key-like value in a request"
        assert "subscriber_key" not in text and "drop_ids" not in text
    kelurahan_opened = [json.loads(open(row[7]).read()) for row in rows if row[2] == "opened"]
    district = [p for p in kelurahan_opened if p["level"] == "kelurahan"]
    assert {p["operator"]: p["cell_ids"] for p in district} == {"telkomsel": ["510-10-1-101", "510-10-1-102"],
                                                               "xl": ["510-11-2-201"]}
    assert district[0]["message"]["id"] == ("Kerumunan terdeteksi di sekitar Gambir (kelurahan). Jaga jarak fisik, "
                                           "pakai masker, hindari keramaian.")
    assert district[0]["message"]["en"].startswith("A crowd has been detected around Gambir (urban village).")
    assert district[0]["crowd_estimate"] == {"value": 3500, "unit": "people", "suppressed": False}
    site = [p for p in kelurahan_opened if p["level"] == "site"]
    # The site's own cells, plus the other operator's neighbouring site; the far site s3 is not warned.
    assert {p["operator"]: p["cell_ids"] for p in site} == {"telkomsel": ["510-10-1-101", "510-10-1-102"],
                                                           "xl": ["510-11-2-201"]}
    escalated = [json.loads(open(row[7]).read()) for row in rows if row[2] == "escalated"]
    assert all("siaga" in p["message"]["id"] and "alert" in p["message"]["en"] for p in escalated)
    assert by_key  # rows exist for each (transition, operator)


def test_failed_delivery_is_recorded_and_retried_on_rerun_without_duplicates(tmp_path, monkeypatch, operator_server):
    server = operator_server(failures=2)
    crowd = _configure(tmp_path, monkeypatch, server.url, max_attempts=2)
    with dg.instance_for_test() as instance:
        _run(crowd, instance, [crowd_alerts])
        failed = _run(crowd, instance, [broadcast_requests], raise_on_error=False)
        assert not failed.success
        assert all(row[8] == "503" and row[9] == 2 and row[10] is None for row in _requests(crowd))
        assert not server.accepted
        files_before = sorted(path.stat().st_mtime_ns for path in crowd.settings.outbox.glob("*/*.json"))
        assert _run(crowd, instance, [broadcast_requests]).success
        assert _run(crowd, instance, [broadcast_requests]).success
    rows = _requests(crowd)
    assert all(row[8] == "202" and row[9] == 3 for row in rows)
    assert all(count == 1 for count in server.accepted.values()) and len(server.accepted) == len(rows)
    # Outbox files were written once, not rewritten by the retries.
    assert sorted(path.stat().st_mtime_ns for path in crowd.settings.outbox.glob("*/*.json")) == files_before


def test_files_only_without_http_configuration(tmp_path, monkeypatch):
    crowd = _configure(tmp_path, monkeypatch, None)
    with dg.instance_for_test() as instance:
        _run(crowd, instance, [crowd_alerts])
        result = _run(crowd, instance, [broadcast_requests])
    metadata = result.asset_materializations_for_node("broadcast_requests")[0].metadata
    assert metadata["requests_created"].value == 6 and metadata["http_attempted"].value == 0
    assert all(row[8] is None and row[10] is None for row in _requests(crowd))


def test_retries_on_connection_refused_then_gives_up():
    target = HttpTarget(url="http://127.0.0.1:9/none", timeout_s=0.5, max_attempts=3, backoff_base_s=0.01)
    delays = []
    result = post_with_retries(target, {"x": 1}, "key", sleep=delays.append)
    assert not result.delivered and result.attempts == 3 and result.http_status.startswith("error:")
    assert len(delays) == 2 and all(0 <= delay <= 0.02 for delay in delays)
    assert all(0 <= backoff_delay(n, 0.5, 4.0) <= min(4.0, 0.5 * 2 ** (n - 1)) for n in range(1, 8))


def test_one_crowd_over_neighbouring_places_warns_each_cell_once(tmp_path, monkeypatch):
    """K1 and site s1 (inside K1, same cells) light up in the same windows: one crowd. Each
    operator's cell gets one opened request from the alerts live together; a later retraction
    of the first alert leaves out the cells the second still stands behind."""
    together = {index: 3500.0 for index in range(1, WINDOWS)}  # still going at the end: both alerts stay open
    crowd = alerts_platform(tmp_path, monkeypatch, windows=WINDOWS, kelurahan_k1=together,
                            site_s1={index: 400.0 for index in together})
    with dg.instance_for_test() as instance:
        _run(crowd, instance, [crowd_alerts])
        _run(crowd, instance, [broadcast_requests])
        with crowd.warehouse() as con:
            alerts = con.execute("SELECT alert_id, level, opened_window FROM crowd_alerts ORDER BY opened_window, alert_id").fetchall()
            opened = con.execute("SELECT alert_id, operator, cell_ids FROM broadcast_requests WHERE transition = 'opened'").fetchall()
        assert {level for _, level, _ in alerts} == {"kelurahan", "site"} and alerts[0][2] == alerts[1][2]
        warned = Counter((operator, cell) for _, operator, cells in opened for cell in cells)
        assert warned and max(warned.values()) == 1, warned
        assert {alert_id for alert_id, _, _ in opened} == {alerts[0][0]}  # the second adds no cell of its own
        # The first alert turns out wrong (retracted); the second still holds: its cells are not cancelled.
        with crowd.warehouse() as con:
            con.execute("UPDATE crowd_alerts SET state = 'retracted' WHERE alert_id = ?", [alerts[0][0]])
        _run(crowd, instance, [broadcast_requests])
        with crowd.warehouse() as con:
            cancelled = con.execute("SELECT operator, cell_ids FROM broadcast_requests WHERE transition = 'retracted'").fetchall()
    assert {operator for operator, _ in cancelled} == {operator for _, operator, _ in opened}
    assert all(cells == [] for _, cells in cancelled)
