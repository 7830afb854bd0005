"""No request reaches an internal table (design.md 4.3a): the server's in-memory copy holds only
the published tables and public geography, and every route, with crafted parameters (table
names, SQL fragments, path traversal), answers without a single internal value.

The fixture's internal tables (district_density, bts_presence, crowd_alerts, alert_transitions)
carry marker values that appear nowhere in the published ones."""

from __future__ import annotations

import requests

from crowd_platform_tests.api import published_warehouse
from crowd_platform_tests.api.conftest import settings_for

INTERNAL = ("bts_presence", "district_density", "district_density_shown", "density_baseline", "crowd_alerts",
            "alert_transitions", "alert_place_state", "drops", "audit_log", "api_tokens", "broadcast_requests",
            "deletion_certificates", "window_completeness", "district_presence_daily", "subscriber_daily_location",
            "indicators_shown")
CRAFTED = [
    *INTERNAL,
    "district_density_published; SELECT * FROM bts_presence",
    "' OR 1=1 --", "\" OR \"\"=\"", "1; DROP TABLE district_density_published",
    "../warehouse.duckdb", "../../warehouse.duckdb", "..%2F..%2Fwarehouse.duckdb", "%2e%2e/%2e%2e/etc/passwd",
    "wh.main.bts_presence", "main.crowd_alerts", "memory.main.bts_presence", "read_parquet('/etc/passwd')",
]


def _assert_clean(response: requests.Response, where: str) -> None:
    body = response.content.decode("utf-8", "replace")
    for marker in published_warehouse.SECRET_MARKERS:
        assert marker not in body, f"internal value {marker} leaked through {where}"
    assert "Traceback" not in body and "duckdb" not in body.lower(), where
    assert response.status_code < 500, where


def test_in_memory_copy_has_no_internal_table(api_server):
    from crowd_platform.api.datasets import published_tables
    from crowd_platform.api.snapshot import api_sql, build_snapshot

    settings = settings_for(api_server.home)
    published = set(published_tables(settings))  # from the contract (others may add indicator tables)
    assert {"district_density_published", "crowd_alerts_published", "alert_transitions_published"} <= published
    assert all(name.endswith("_published") for name in published)
    snapshot = build_snapshot(settings, version=1)
    try:
        tables = {row["table_name"] for row in snapshot.rows(api_sql("snapshot_tables"))}
        columns = {row["column_name"] for row in snapshot.rows(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'districts'")}
    finally:
        snapshot.close()
    assert tables == published | {"districts", "places"}  # the fixture's warehouse has every published table
    assert not tables & set(INTERNAL)
    assert "population" not in columns, "only public geography columns are copied"
    health = api_server.get("/health", token=None).json()
    assert set(health["snapshot"]["datasets"]) == published


def test_no_route_reaches_an_internal_table(api_server):
    checked = 0
    for crafted in CRAFTED:
        for path, params in (
            ("/indicators/" + crafted, {}),
            ("/indicators/" + requests.utils.quote(crafted, safe=""), {}),
            ("/density", {"level": crafted, "window": "2020-04-03T02:00:00Z"}),
            ("/density", {"level": "kelurahan", "window": crafted}),
            ("/density.geojson", {"level": crafted, "window": "2020-04-03T02:00:00Z"}),
            ("/alerts", {"state": crafted}),
            ("/alerts", {"window": crafted}),
            ("/alerts.geojson", {"state": crafted}),
            ("/alerts/" + requests.utils.quote(crafted, safe=""), {}),
            ("/exports/density.parquet", {"level": crafted, "start": "2020-04-03T00:00:00Z", "end": "2020-04-04T00:00:00Z"}),
            ("/windows", {"table": crafted}),
            ("/indicators/district_density_published", {"level": crafted}),
        ):
            response = api_server.get(path, params=params)
            _assert_clean(response, f"{path} {params}")
            assert response.status_code in (400, 403, 404), f"{path} {params}: {response.status_code}"
            checked += 1
        camara = api_server.post("/camara/population-density/v0.3/retrieve",
                                 json={"area": {"areaType": crafted}, "startTime": crafted, "endTime": crafted, crafted: 1})
        _assert_clean(camara, "camara")
        assert camara.status_code == 400
    assert checked > 300
    # the routes that do answer, with every parameter they take, carry no internal value either
    for path, params in (("/windows", {}), ("/alerts", {}), ("/alerts.geojson", {}), ("/alerts/A-district-1", {}),
                         ("/density", {"level": "kelurahan", "start": "2020-04-03T00:00:00Z", "end": "2020-04-04T00:00:00Z"}),
                         ("/density.geojson", {"level": "kecamatan", "window": "2020-04-03T02:00:00Z"})):
        response = api_server.get(path, params=params)
        assert response.status_code == 200
        _assert_clean(response, path)


def test_path_traversal_on_static_and_api(api_server):
    base = api_server.url
    for raw in ("/map/../../warehouse.duckdb", "/map/..%2F..%2Fwarehouse.duckdb", "/map/%2e%2e/%2e%2e/warehouse.duckdb",
                "/map/../api/tokens.json", "/map/..%2f..%2fapi%2ftokens.json", "/api/v1/../../warehouse.duckdb",
                "/api/v1/indicators/..%2F..%2Fwarehouse.duckdb", "/warehouse.duckdb", "/api/tokens.json",
                "/api_audit/", "/map/%2e%2e%2f%2e%2e%2fsql/schema/080_api.sql"):
        session = requests.Session()
        request = requests.Request("GET", base + raw, headers={"Authorization": "Bearer " + api_server.tokens["all"]})
        prepared = session.prepare_request(request)
        prepared.url = base + raw  # keep the dots and escapes exactly as written
        response = session.send(prepared, timeout=10)
        _assert_clean(response, raw)
        assert response.status_code in (400, 401, 403, 404), (raw, response.status_code)
        assert b"DUCK" not in response.content[:64] and b"sha256" not in response.content
