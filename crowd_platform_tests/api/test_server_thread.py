"""`start_server` (a background thread of the calling process, for the demo) and `api_addresses`."""

from __future__ import annotations

import requests

from crowd_platform_tests.api import published_warehouse
from crowd_platform_tests.api.conftest import issue_tokens, read_audit, settings_for


def test_start_server_in_a_thread_and_addresses(tmp_path):
    from crowd_platform.api.server import api_addresses, start_server

    home = tmp_path / "home"
    published_warehouse.build(home / "warehouse.duckdb", kelurahan=12, windows=2, alerts=False)
    token = issue_tokens(home)["density"]
    settings = settings_for(home)
    server = start_server(settings, "127.0.0.1", 0, refresh_interval_s=0.5)
    try:
        addresses = api_addresses(settings, server.host, server.port, token=token)
        assert addresses["base"] == server.url and addresses["map"] == f"{server.url}/map/#token={token}"
        assert addresses["audit_dir"] == str(home / "api_audit")
        windows = requests.get(addresses["windows"], headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert windows.status_code == 200 and len(windows.json()["windows"]) == 2
        assert requests.get(addresses["alerts"], headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 403
    finally:
        server.stop()
    assert not server.thread.is_alive()
    assert [record["status"] for record in read_audit(home)] == [200, 403], "stopping drains the audit queue"
