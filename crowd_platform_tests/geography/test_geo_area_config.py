"""A new area is configuration only: the registry screens cells against the configured boundaries
(plus geography.bounds_margin_m), never a country's box in code, and an area without any valid
cell is a failed check with a one-line reason, not a crash. Real DuckDB, real Dagster.

The area is two made-up wards in Kathmandu (UTM 45N), far from the Jakarta default; cell ids keep
the operators' contract MNCs so only the place decides.
"""

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pytest
import shapely
import yaml

from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import DEFAULT_CONFIG, get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.geography import registry
from crowd_platform.geography.assets import geography_assets
from crowd_platform.geography.checks import geography_checks
from crowd_platform_tests.support.cell_lists import publish_cells

SNAPSHOT = datetime(2020, 3, 20, tzinfo=timezone.utc)
WARDS = {"W1": (85.30, 27.70, 85.32, 27.72), "W2": (85.32, 27.70, 85.34, 27.72)}


def write_area_config(tmp_path: Path) -> Path:
    wards = gpd.GeoDataFrame({"ward_code": list(WARDS), "ward_name": ["Ward 1", "Ward 2"]},
                             geometry=[shapely.box(*bounds) for bounds in WARDS.values()], crs="EPSG:4326")
    boundary_file = tmp_path / "wards.geojson"
    wards.to_file(boundary_file, driver="GeoJSON")
    document = yaml.safe_load(DEFAULT_CONFIG.read_text())
    document["geography"] = {
        "name": "kathmandu-test", "area_crs": "EPSG:32645", "cells_reference": None,
        "levels": [{"level": "ward", "file": str(boundary_file), "code": "ward_code", "name": "ward_name"}],
        "population": {"file": None},
    }
    document["density"].update({"local_timezone": "Asia/Kathmandu", "holidays_country": "NP"})
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def cells(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame({"cell_id": [row[0] for row in rows], "lon": [row[1] for row in rows],
                         "lat": [row[2] for row in rows], "radio": "LTE"})


def materialize(home: Path):
    with dg.instance_for_test() as instance:
        return dg.materialize([*geography_assets, *geography_checks], resources={"crowd": CrowdPlatform(home=str(home))},
                              instance=instance, raise_on_error=False)


def checks_of(result) -> dict:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


@pytest.fixture()
def area_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CROWD_CONFIG", str(write_area_config(tmp_path)))
    home = tmp_path / "home"
    get_settings(home).ensure_dirs()
    return home


def test_registry_screens_against_the_configured_boundaries(area_home):
    publish_cells(area_home, "telkomsel", "telkomsel-cells-1", SNAPSHOT, cells([
        ("510-10-1-1", 85.31, 27.71),     # ward W1
        ("510-10-1-2", 85.33, 27.71),     # ward W2
        ("510-10-1-3", 85.345, 27.71),    # ~500 m east of W2: within area_buffer_m
        ("510-10-1-4", 85.40, 27.71),     # ~6 km east: in the box + margin, not near any ward
        ("510-10-1-5", 106.83, -6.17),    # Jakarta: far outside the configured area
        ("510-10-1-6", 27.71, 85.31),     # lon/lat swapped
    ]))
    result = materialize(area_home)
    assert result.success
    with connect(area_home / "warehouse.duckdb", read_only=True) as con:
        accepted = {row[0] for row in con.execute("SELECT cell_id FROM bts_registry").fetchall()}
        reasons = dict(con.execute("SELECT cell_id, reason FROM bts_registry_rejects").fetchall())
        weighted = con.execute("SELECT count(DISTINCT site_id) FROM bts_district_weights").fetchone()[0]
    assert accepted == {"510-10-1-1", "510-10-1-2", "510-10-1-3"}
    assert reasons == {"510-10-1-4": "outside_area", "510-10-1-5": "outside_area", "510-10-1-6": "swapped_lon_lat"}
    assert weighted == 3
    assert checks_of(result)["registry_has_cells"].passed


def test_area_bounds_come_from_the_boundaries_plus_the_margin():
    wards = gpd.GeoDataFrame(geometry=[shapely.box(*bounds) for bounds in WARDS.values()], crs="EPSG:4326")
    west, south, east, north = registry.area_bounds(wards, 10_000)
    assert south == pytest.approx(27.70 - 10_000 / 111_320) and north == pytest.approx(27.72 + 10_000 / 111_320)
    assert 85.19 < west < 85.20 and 85.44 < east < 85.45  # 10 km of longitude at ~27.8 N is ~0.10 degrees
    assert registry.area_bounds(wards, 0) == pytest.approx((85.30, 27.70, 85.34, 27.72))


def test_no_cell_in_the_area_is_a_failed_check_not_a_crash(area_home):
    # No cell-list drop at all.
    result = materialize(area_home)
    assert result.success
    check = checks_of(result)["registry_has_cells"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "no accepted cell-list drop" in check.description

    # Every cell elsewhere (the registry stays empty): coverage and weights are empty, the check says why.
    publish_cells(area_home, "telkomsel", "telkomsel-cells-1", SNAPSHOT,
                  cells([("510-10-1-1", 106.83, -6.17), ("510-10-1-2", 106.80, -6.20)]))
    result = materialize(area_home)
    assert result.success
    check = checks_of(result)["registry_has_cells"]
    assert not check.passed
    assert check.description.startswith("no cell of any operator lies inside the configured area")
    assert "outside_area 2" in check.description and "\n" not in check.description
    assert check.metadata["reason"].value == check.description
    with connect(area_home / "warehouse.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM bts_registry").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM bts_coverage").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM bts_district_weights").fetchone()[0] == 0


def test_sites_of_an_empty_registry():
    sites = registry.sites_of(pd.DataFrame({"site_id": pd.Series(dtype=str), "operator": pd.Series(dtype=str)}))
    assert list(sites.columns) == ["site_id", "operator", "lon", "lat"] and sites.empty
