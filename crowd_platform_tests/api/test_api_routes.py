"""The published API's routes against a real uvicorn server and a real warehouse: shapes, values
equal to the publication, suppressed values never numbers (JSON, GeoJSON, CAMARA, GeoParquet),
bad parameters answered with one line of JSON."""

from __future__ import annotations

import io
import json
import re
import time

import duckdb
import pytest

from crowd_platform_tests.api.conftest import read_audit

W0 = "2020-04-03T02:00:00Z"


def _published(server, level: str, window: str = W0) -> dict[str, tuple]:
    con = duckdb.connect(str(server.home / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT district_code, people_estimate, density_per_km2, suppressed FROM district_density_published "
                           "WHERE level = ? AND window_start = ?::TIMESTAMPTZ", [level, window]).fetchall()
    finally:
        con.close()
    return {row[0]: row[1:] for row in rows}


def test_health_windows_and_levels(api_server):
    health = api_server.get("/health", token=None)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    body = api_server.get("/windows").json()
    assert body["windows"] == ["2020-04-03T02:00:00Z", "2020-04-03T02:15:00Z", "2020-04-03T02:30:00Z", "2020-04-03T02:45:00Z"]
    assert [level["level"] for level in body["levels"]] == ["kelurahan", "kecamatan", "kabkota"]
    assert body["window_minutes"] == 15 and body["timezone"] == "Asia/Jakarta"


@pytest.mark.parametrize("level", ["kelurahan", "kecamatan"])
def test_density_equals_the_publication_and_hides_suppressed(api_server, level):
    response = api_server.get("/density", params={"level": level, "window": W0})
    assert response.status_code == 200
    assert response.headers["X-Snapshot-Version"] and float(response.headers["X-Snapshot-Age"]) >= 0
    rows = response.json()["rows"]
    published = _published(api_server, level)
    assert {row["district_code"] for row in rows} == set(published)
    assert set(rows[0]) == {"window_start", "level", "district_code", "district_name", "people_estimate",
                            "density_per_km2", "suppressed"}
    for row in rows:
        people, density, suppressed = published[row["district_code"]]
        assert row["suppressed"] == suppressed
        if suppressed:
            assert row["people_estimate"] is None and row["density_per_km2"] is None
        else:
            assert row["people_estimate"] == people and row["density_per_km2"] == pytest.approx(density)
    if level == "kelurahan":
        assert any(row["suppressed"] for row in rows), "the fixture has suppressed kelurahan"


def test_density_range(api_server):
    rows = api_server.get("/density", params={"level": "kecamatan", "start": W0, "end": "2020-04-03T03:00:00Z"}).json()["rows"]
    assert len(rows) == 4 * len(api_server.info["kecamatan"])


def test_density_geojson(api_server):
    response = api_server.get("/density.geojson", params={"level": "kelurahan", "window": W0})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/geo+json")
    collection = response.json()
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(api_server.info["codes"])
    for feature in collection["features"]:
        assert feature["geometry"]["type"] == "Polygon"
        properties = feature["properties"]
        if properties["suppressed"]:
            assert properties["people_estimate"] is None and properties["density_per_km2"] is None
        else:
            assert isinstance(properties["people_estimate"], int)


def test_alerts_live_state_geojson_and_detail(api_server):
    alerts = api_server.get("/alerts").json()["alerts"]
    assert {alert["alert_id"] for alert in alerts} == {"A-district-1", "A-site-1"}
    site = next(alert for alert in alerts if alert["level"] == "site")
    assert site["people_estimate"] is None and site["evidence_suppressed"] is True
    assert {a["alert_id"] for a in api_server.get("/alerts", params={"state": "open"}).json()["alerts"]} == {"A-district-1"}
    # the site alert closed at 02:30: live at 02:15, not at 02:30
    assert {a["alert_id"] for a in api_server.get("/alerts", params={"window": "2020-04-03T02:15:00Z"}).json()["alerts"]} \
        == {"A-district-1", "A-site-1"}
    assert {a["alert_id"] for a in api_server.get("/alerts", params={"window": "2020-04-03T02:30:00Z"}).json()["alerts"]} \
        == {"A-district-1"}
    features = {f["id"]: f for f in api_server.get("/alerts.geojson").json()["features"]}
    assert features["A-district-1"]["geometry"]["type"] == "Polygon"
    assert features["A-site-1"]["geometry"] == {"type": "Point", "coordinates": [106.75, -6.15]}
    assert set(features["A-site-1"]["properties"]) == {"alert_id", "level", "place_id", "place_name", "state", "severity",
                                                       "opened_window", "last_window", "people_estimate",
                                                       "evidence_suppressed"}
    detail = api_server.get("/alerts/A-site-1").json()
    assert detail["lineage_id"] == "A-site-1"
    assert detail["lineage_command"] == "crowd-platform audit trace A-site-1"
    assert [t["transition"] for t in detail["transitions"]] == ["open", "close"]
    assert all(t["people_estimate"] is None for t in detail["transitions"])
    assert api_server.get("/alerts/A-nope").status_code == 404


def _camara(server, area, start=W0, end="2020-04-03T02:59:00Z", precision=7, token="all"):
    return server.post("/camara/population-density/v0.3/retrieve", token=token,
                       json={"area": area, "startTime": start, "endTime": end, "precision": precision})


def test_camara_polygon_cells_and_suppression(api_server):
    whole = {"areaType": "POLYGON", "boundary": [{"latitude": -5.9, "longitude": 106.6}, {"latitude": -5.9, "longitude": 107.2},
                                                  {"latitude": -6.6, "longitude": 107.2}, {"latitude": -6.6, "longitude": 106.6}]}
    response = _camara(api_server, whole)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "SUPPORTED_AREA"
    [interval] = body["timedPopulationDensityData"]
    assert (interval["startTime"], interval["endTime"]) == ("2020-04-03T02:00:00Z", "2020-04-03T03:00:00Z")
    cells = {cell["districtCode"]: cell for cell in interval["cellPopulationDensityData"]}
    assert set(cells) == set(api_server.info["codes"]), "cells are the finest published districts"
    hidden_in_hour = {code for _, code in api_server.info["suppressed"]}
    for code, cell in cells.items():
        assert len(cell["geohash"]) == 7
        if code in hidden_in_hour:
            assert cell == {"geohash": cell["geohash"], "districtCode": code, "districtName": cell["districtName"],
                            "dataType": "LOW_DENSITY"}
        else:
            assert cell["dataType"] == "DENSITY_ESTIMATION"
            assert cell["minPplDensity"] <= cell["pplDensity"] <= cell["maxPplDensity"]
    assert any(cell["dataType"] == "LOW_DENSITY" for cell in cells.values())


def test_camara_audit_record_names_the_body_without_a_pseudonym_shaped_hash(api_server):
    """The kept API audit files are scanned at sunset for 64-hex tokens (the shape of a subscriber
    key): the body is identified by 16 hex digits of its SHA-256, never the full digest."""
    area = {"areaType": "CIRCLE", "center": {"latitude": -6.105, "longitude": 106.705}, "radius": 250}
    assert _camara(api_server, area).status_code == 200
    deadline = time.monotonic() + 5
    while not (records := [r for r in read_audit(api_server.home) if "body_sha256_16" in r["params"]]):
        assert time.monotonic() < deadline, "the CAMARA request was not audited"
        time.sleep(0.2)
    assert all(re.fullmatch(r"[0-9a-f]{16}", r["params"]["body_sha256_16"]) for r in records)
    text = "".join(path.read_text() for path in (api_server.home / "api_audit").glob("*.jsonl"))
    assert re.search(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])", text) is None


def test_camara_circle_and_outside(api_server):
    body = _camara(api_server, {"areaType": "CIRCLE", "center": {"latitude": -6.105, "longitude": 106.705},
                                "radius": 300}).json()
    [interval] = body["timedPopulationDensityData"]
    assert [cell["districtCode"] for cell in interval["cellPopulationDensityData"]] == [api_server.info["codes"][0]]
    outside = _camara(api_server, {"areaType": "CIRCLE", "center": {"latitude": 40.0, "longitude": 10.0}, "radius": 1000})
    assert outside.json() == {"status": "AREA_NOT_SUPPORTED", "timedPopulationDensityData": []}
    later = _camara(api_server, {"areaType": "CIRCLE", "center": {"latitude": -6.105, "longitude": 106.705}, "radius": 300},
                    start="2020-04-05T00:00:00Z", end="2020-04-05T00:30:00Z").json()
    assert later["status"] == "PART_OF_AREA_NOT_SUPPORTED"
    assert later["timedPopulationDensityData"][0]["cellPopulationDensityData"][0]["dataType"] == "NO_DATA"


@pytest.mark.parametrize("payload, code", [
    ({"area": {"areaType": "POLYGON", "boundary": [{"latitude": -6.1, "longitude": 106.7}] * 16},
      "startTime": W0, "endTime": W0}, "POPULATION_DENSITY_DATA.INVALID_AREA"),
    ({"area": {"areaType": "CIRCLE", "center": {"latitude": -6.1, "longitude": 106.7}, "radius": 100},
      "startTime": "2020-04-03T03:00:00Z", "endTime": W0}, "POPULATION_DENSITY_DATA.INVALID_END_TIME"),
    ({"area": {"areaType": "CIRCLE", "center": {"latitude": -6.1, "longitude": 106.7}, "radius": 100},
      "startTime": W0, "endTime": W0, "precision": 13}, "POPULATION_DENSITY_DATA.UNSUPPORTED_PRECISION"),
    ({"area": {"areaType": "CIRCLE", "center": {"latitude": 99, "longitude": 106.7}, "radius": 100},
      "startTime": W0, "endTime": W0}, "INVALID_ARGUMENT"),
    ({"area": {"areaType": "CIRCLE", "center": {"latitude": -6.1, "longitude": 106.7}, "radius": 100},
      "startTime": "2020-04-03T02:00:00", "endTime": W0}, "INVALID_ARGUMENT"),
    ({"area": {"areaType": "CIRCLE", "center": {"latitude": -6.1, "longitude": 106.7}, "radius": 100},
      "startTime": W0, "endTime": W0, "sink": "https://example.com/x"}, "INVALID_ARGUMENT"),
    ("not an object", "INVALID_ARGUMENT"),
])
def test_camara_bad_requests(api_server, payload, code):
    response = api_server.post("/camara/population-density/v0.3/retrieve", json=payload)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert "\n" not in response.text.strip()


def test_geoparquet_export(api_server):
    import geopandas
    import pyarrow.parquet as pq

    response = api_server.get("/exports/density.parquet",
                              params={"level": "kelurahan", "start": "2020-04-03T00:00:00Z", "end": "2020-04-04T00:00:00Z"})
    assert response.status_code == 200
    data = io.BytesIO(response.content)
    assert b"geo" in pq.read_metadata(data).metadata
    frame = geopandas.read_parquet(io.BytesIO(response.content))
    assert len(frame) == 4 * len(api_server.info["codes"]) and frame.crs.to_epsg() == 4326
    hidden = frame[frame["suppressed"]]
    assert len(hidden) == len(api_server.info["suppressed"])
    assert hidden["people_estimate"].isna().all() and hidden["density_per_km2"].isna().all()
    assert frame[~frame["suppressed"]]["people_estimate"].notna().all()


MARKER = "zz-unique-marker-7731"


@pytest.mark.parametrize("path, params", [
    ("/density", {"level": "kelurahan"}),
    ("/density", {"level": MARKER, "window": W0}),
    ("/density", {"level": "kelurahan", "window": MARKER}),
    ("/density", {"level": "kelurahan", "window": W0, "start": W0, "end": W0}),
    ("/density", {"level": "kelurahan", "start": "2020-04-03T02:00:00Z", "end": "2020-05-03T02:00:00Z"}),
    ("/density", {"level": "kelurahan", "start": "2020-04-03T03:00:00Z", "end": "2020-04-03T02:00:00Z"}),
    ("/density", {"level": "kelurahan", "window": W0, "table": MARKER}),
    ("/density.geojson", {"level": "kelurahan"}),
    ("/alerts", {"window": MARKER}),
    ("/alerts", {"state": MARKER + "'; DROP TABLE x; --"}),
    ("/alerts/" + MARKER + "%27%20OR%201=1", {}),
    ("/exports/density.parquet", {"level": "kelurahan", "window": W0}),
    ("/exports/density.parquet", {"level": "kelurahan", "start": W0, "end": MARKER}),
    ("/windows", {"x": MARKER}),
])
def test_bad_parameters_one_line_400(api_server, path, params):
    response = api_server.get(path, params=params)
    assert response.status_code == 400, (path, params, response.text)
    assert response.headers["content-type"].startswith("application/json")
    text = response.text.strip()
    assert "\n" not in text and "Traceback" not in text and MARKER not in text
    body = json.loads(text)
    assert body["status"] == 400 and body["code"] == "INVALID_ARGUMENT" and body["message"]


def test_unknown_route_and_method(api_server):
    missing = api_server.get("/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    wrong = api_server.post("/density")
    assert wrong.status_code == 405 and "\n" not in wrong.text.strip()


def test_map_page_served_without_token(api_server):
    import requests

    response = requests.get(api_server.url + "/map/", timeout=10)
    assert response.status_code == 200 and "<html" in response.text.lower()


def test_camara_body_not_json(api_server):
    response = api_server.post("/camara/population-density/v0.3/retrieve", data=b"{not json",
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "INVALID_ARGUMENT"
    big = api_server.post("/camara/population-density/v0.3/retrieve", data=b" " * (70 * 1024))
    assert big.status_code == 400 and "too large" in big.json()["message"]
