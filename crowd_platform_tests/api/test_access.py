"""Bearer tokens and the audit trail: 401 without or with a bad token, 403 outside the token's
scope, a revocation seen within seconds, the CLI never printing a hash, one audit record per
request."""

from __future__ import annotations

import time

import pytest

from crowd_platform_tests.api.conftest import read_audit, settings_for

W0 = "2020-04-03T02:00:00Z"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"},
                                     {"Authorization": "Bearer cp_not-a-real-token"}])
def test_401_without_or_with_a_bad_token(api_server, headers):
    response = api_server.get("/density", token=None, headers=headers, params={"level": "kelurahan", "window": W0})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("token, path, status", [
    ("density", "/density?level=kelurahan&window=" + W0, 200),
    ("density", "/windows", 200),
    ("density", "/alerts", 403),
    ("density", "/alerts.geojson", 403),
    ("density", "/alerts/A-site-1", 403),
    ("alerts", "/alerts", 200),
    ("alerts", "/alerts/A-site-1", 200),
    ("alerts", "/density?level=kelurahan&window=" + W0, 403),
    ("alerts", "/density.geojson?level=kelurahan&window=" + W0, 403),
    ("alerts", "/exports/density.parquet?level=kelurahan&start=2020-04-03T00:00:00Z&end=2020-04-04T00:00:00Z", 403),
    ("all", "/alerts", 200),
])
def test_scopes(api_server, token, path, status):
    assert api_server.get(path, token=token).status_code == status


def test_camara_needs_the_density_scope(api_server):
    payload = {"area": {"areaType": "CIRCLE", "center": {"latitude": -6.105, "longitude": 106.705}, "radius": 300},
               "startTime": W0, "endTime": W0}
    path = "/camara/population-density/v0.3/retrieve"
    assert api_server.post(path, token="alerts", json=payload).status_code == 403
    assert api_server.post(path, token="density", json=payload).status_code == 200
    assert api_server.post(path, token=None, json=payload).status_code == 401


def test_revocation_is_seen_within_seconds(fresh_server):
    from crowd_platform.api.tokens import issue, revoke

    settings = settings_for(fresh_server.home)
    token, record = issue(settings, "short-lived", ["district_density_published"], actor="pytest")
    deadline = time.monotonic() + 5
    while fresh_server.get("/windows", token=token).status_code != 200:
        assert time.monotonic() < deadline, "a new token is accepted within seconds"
        time.sleep(0.1)
    revoked_at = time.monotonic()
    assert revoke(settings, record["token_id"], actor="pytest") == [record["token_id"]]
    while fresh_server.get("/windows", token=token).status_code != 401:
        assert time.monotonic() - revoked_at < 3, "a revoked token is refused within seconds"
        time.sleep(0.1)
    assert fresh_server.get("/windows", token="all").status_code == 200, "other tokens still work"


def test_tokens_cli_prints_the_token_once_and_never_a_hash(fresh_server, capsys, monkeypatch):
    import hashlib
    import json

    from crowd_platform.cli import main

    monkeypatch.setenv("CROWD_HOME", str(fresh_server.home))
    assert main(["tokens", "issue", "--name", "cli-user", "--datasets", "district_density_published"]) == 0
    issued = capsys.readouterr().out
    token = issued.strip().splitlines()[-1]
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith("cp_") and len(token) > 40
    assert main(["tokens", "list"]) == 0
    listed = capsys.readouterr().out
    assert main(["tokens", "list", "--json"]) == 0
    listed_json = capsys.readouterr().out
    for text in (issued, listed, listed_json):
        assert digest not in text
    assert token not in listed and token not in listed_json and "cli-user" in listed
    assert all("sha256" not in row for row in json.loads(listed_json))
    assert main(["tokens", "issue", "--name", "x", "--datasets", "bts_presence"]) == 2
    assert "not a published dataset" in capsys.readouterr().err
    assert main(["tokens", "revoke", "cli-user"]) == 0
    assert main(["tokens", "revoke", "cli-user"]) == 2
    # the token file holds hashes only, never a token
    stored = (fresh_server.home / "api" / "tokens.json").read_text()
    assert token not in stored and digest in stored


def test_every_request_is_an_audit_record(fresh_server):
    marker = "2020-04-03T02:15:00Z"
    statuses = [
        fresh_server.get("/density", params={"level": "kecamatan", "window": marker}).status_code,
        fresh_server.get("/density", token="alerts", params={"level": "kecamatan", "window": marker}).status_code,
        fresh_server.get("/density", token=None, params={"level": "kecamatan", "window": marker}).status_code,
        fresh_server.get("/density", params={"level": "kecamatan", "window": "bad"}).status_code,
        fresh_server.get("/nope").status_code,
    ]
    assert statuses == [200, 403, 401, 400, 404]
    deadline = time.monotonic() + 5
    while True:
        records = [r for r in read_audit(fresh_server.home) if r["route"] in ("/density", "/api/v1/nope")]
        if len(records) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(r["who"], r["status"]) for r in records] == [("all-reader", 200), ("alerts-reader", 403), ("-", 401),
                                                          ("all-reader", 400), ("-", 404)]
    first = records[0]
    assert first["dataset"] == "district_density_published"
    assert first["params"] == {"level": "kecamatan", "window": marker}
    assert first["method"] == "GET" and first["at"].endswith("Z")
    tokens = set(fresh_server.tokens.values())
    text = "".join(path.read_text() for path in (fresh_server.home / "api_audit").glob("*.jsonl"))
    assert not any(token in text for token in tokens), "no token in the audit trail"
