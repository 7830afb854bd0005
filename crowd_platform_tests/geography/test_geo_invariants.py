"""Invariants of coverage and district weights on small synthetic districts (no reference files).

Two 2 km x 2 km districts side by side in UTM 48S (Jakarta's projection), "A" west and "B"
east, plus a water unit north of them that counts for area but never for weights.
"""


from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from crowd_platform.common.settings import BoundaryLevel, GeographySection
from crowd_platform.geography import boundaries, coverage

AREA_CRS = "EPSG:32748"
X0, Y0 = 700_000.0, 9_310_000.0
SIDE = 2_000.0

# Boundaries are given as frames below; the level only satisfies the section's schema.
CONFIG = GeographySection(
    name="synthetic", levels=(BoundaryLevel(level="kelurahan", file=Path("synthetic.geojson"), code="district_code"),),
    area_crs=AREA_CRS, weights_method="voronoi_area", weight_by_population=False,
    area_buffer_m=500.0, move_threshold_m=50.0, site_decimals=6,
)


def synthetic_districts(population_a: float = 1000.0, population_b: float = 3000.0) -> gpd.GeoDataFrame:
    square_a = shapely.box(X0, Y0, X0 + SIDE, Y0 + SIDE)
    square_b = shapely.box(X0 + SIDE, Y0, X0 + 2 * SIDE, Y0 + SIDE)
    lake = shapely.box(X0, Y0 + SIDE, X0 + 2 * SIDE, Y0 + 1.5 * SIDE)
    frame = gpd.GeoDataFrame(
        {"district_code": ["A", "B", "W"], "level": "kelurahan", "level_rank": 0,
         "is_admin_unit": [True, True, False], "population": [population_a, population_b, 0.0],
         "land_area_km2": [4.0, 4.0, 0.0]},
        geometry=[square_a, square_b, lake], crs=AREA_CRS,
    )
    return frame.to_crs(boundaries.WGS84)


def sites_at(points_xy: list[tuple[float, float]], operator: str = "op") -> pd.DataFrame:
    """Sites at projected coordinates, expressed in lon/lat as the registry stores them."""
    lonlat = gpd.GeoSeries(shapely.points(points_xy), crs=AREA_CRS).to_crs(boundaries.WGS84)
    return pd.DataFrame({
        "site_id": [f"{operator}:{index}" for index in range(len(points_xy))],
        "operator": operator, "lon": lonlat.x.to_numpy(), "lat": lonlat.y.to_numpy(),
    })


def assert_invariants(result: coverage.Apportionment, land_km2: float = 8.0) -> None:
    weights = result.weights
    sums = weights.groupby(["site_id", "scope"])["weight"].sum()
    assert len(sums) == len(result.coverage), "every site has weights"
    assert np.allclose(sums.to_numpy(), 1.0, atol=1e-9, rtol=0)
    assert (weights["weight"] > 0).all()
    assert "W" not in set(weights["district_code"]), "water units never get people"
    # Sum of district intersection areas == clipped coverage area (per site), and the coverage
    # of distinct points tiles the land exactly.
    piece_sum = result.pieces.groupby(["site_id", "scope"])["area_km2"].sum()
    coverage = result.coverage.set_index(["site_id", "scope"])["area_km2"]
    assert np.allclose(piece_sum.reindex(coverage.index).fillna(0).to_numpy(), coverage.to_numpy(), atol=1e-9)
    projected_area = result.coverage.geometry.to_crs(AREA_CRS).area.to_numpy() / 1e6
    assert np.allclose(projected_area, coverage.to_numpy(), rtol=1e-6, atol=1e-6)
    distinct = result.coverage.drop_duplicates(["scope", "lon", "lat"])
    for _, part in distinct.groupby("scope"):
        assert part["area_km2"].sum() == pytest.approx(land_km2, rel=1e-6)


def test_single_site_covers_all_land_and_splits_by_area():
    result = coverage.apportion(sites_at([(X0 + 500, Y0 + 1000)]), synthetic_districts(), CONFIG)
    assert_invariants(result)
    weights = result.weights[result.weights["scope"] == "op"].set_index("district_code")["weight"]
    assert weights["A"] == pytest.approx(0.5) and weights["B"] == pytest.approx(0.5)
    assert set(result.coverage["scope"]) == {"op", "all"}


def test_two_sites_split_along_the_bisector():
    result = coverage.apportion(sites_at([(X0 + 1000, Y0 + 1000), (X0 + 3000, Y0 + 1000)]), synthetic_districts(), CONFIG)
    assert_invariants(result)
    weights = result.weights[result.weights["scope"] == "op"]
    by_site = weights.groupby("site_id").apply(lambda g: dict(zip(g["district_code"], g["weight"])), include_groups=False)
    assert by_site["op:0"] == pytest.approx({"A": 1.0})
    assert by_site["op:1"] == pytest.approx({"B": 1.0})
    assert result.coverage["area_km2"].iloc[0] == pytest.approx(4.0)


def test_collinear_sites_make_strips():
    points = [(X0 + 1000, Y0 + 200), (X0 + 1000, Y0 + 1000), (X0 + 1000, Y0 + 1800)]
    result = coverage.apportion(sites_at(points), synthetic_districts(), CONFIG)
    assert_invariants(result)
    op = result.coverage[result.coverage["scope"] == "op"]
    # Horizontal strips; each spans both districts in equal shares.
    assert op["area_km2"].sum() == pytest.approx(8.0)
    weights = result.weights[result.weights["scope"] == "op"]
    assert np.allclose(weights["weight"], 0.5)


def test_identical_coordinates_share_one_polygon():
    first = sites_at([(X0 + 1000, Y0 + 1000), (X0 + 3000, Y0 + 1000)], operator="tsel")
    second = sites_at([(X0 + 1000, Y0 + 1000)], operator="isat")
    result = coverage.apportion(pd.concat([first, second], ignore_index=True), synthetic_districts(), CONFIG)
    assert_invariants(result)
    everyone = result.coverage[result.coverage["scope"] == "all"].set_index("site_id")["area_km2"]
    assert everyone["tsel:0"] == pytest.approx(everyone["isat:0"]) == pytest.approx(4.0)
    assert result.coverage.query("scope == 'isat'")["area_km2"].iloc[0] == pytest.approx(8.0)


def test_site_exactly_on_a_border():
    on_border = sites_at([(X0 + SIDE, Y0 + 1000)])
    area = coverage.apportion(on_border, synthetic_districts(), CONFIG)
    assert_invariants(area)
    assert np.allclose(area.weights.query("scope == 'op'")["weight"], 0.5)
    pip_config = CONFIG.model_copy(update={"weights_method": "point_in_polygon"})
    pip = coverage.apportion(on_border, synthetic_districts(), pip_config)
    assert_invariants(pip)
    # Deterministic: on a border the lowest code wins.
    assert pip.weights.query("scope == 'op'")["district_code"].tolist() == ["A"]


def test_population_weighting_follows_density():
    config = CONFIG.model_copy(update={"weight_by_population": True})
    result = coverage.apportion(sites_at([(X0 + SIDE, Y0 + 1000)]), synthetic_districts(1000.0, 3000.0), config)
    assert_invariants(result)
    weights = result.weights.query("scope == 'op'").set_index("district_code")["weight"]
    assert weights["A"] == pytest.approx(0.25) and weights["B"] == pytest.approx(0.75)


def test_offshore_site_goes_to_nearest_district_and_uninhabited_falls_back_to_area():
    # In the lake, north of B: its polygon has land, so it still gets area weights.
    result = coverage.apportion(sites_at([(X0 + 3000, Y0 + 2500)]), synthetic_districts(0.0, 0.0),
                           CONFIG.model_copy(update={"weight_by_population": True}))
    assert_invariants(result)
    pip = coverage.apportion(sites_at([(X0 + 3000, Y0 + 2500)]), synthetic_districts(),
                        CONFIG.model_copy(update={"weights_method": "point_in_polygon"}))
    assert pip.weights.query("scope == 'op'")["district_code"].tolist() == ["B"]


def test_many_random_sites_keep_invariants():
    rng = np.random.default_rng(7)
    points = [(X0 + x, Y0 + y) for x, y in rng.uniform([0, 0], [2 * SIDE, SIDE], size=(60, 2))]
    sites = pd.concat([sites_at(points[:40], "tsel"), sites_at(points[40:], "xl")], ignore_index=True)
    assert_invariants(coverage.apportion(sites, synthetic_districts(), CONFIG))


def test_hierarchy_follows_parent_codes():
    frame = pd.DataFrame({
        "district_code": ["k1", "k2", "c1", "p1"], "level": ["kel", "kel", "kec", "prov"],
        "level_rank": [0, 0, 1, 2], "parent_code": ["c1", "c1", "p1", None],
    })
    hierarchy = boundaries.hierarchy_frame(frame)
    assert set(map(tuple, hierarchy.to_numpy())) == {
        ("k1", "kel", "k1"), ("k1", "kec", "c1"), ("k1", "prov", "p1"),
        ("k2", "kel", "k2"), ("k2", "kec", "c1"), ("k2", "prov", "p1"),
    }


def test_co_located_sites_of_all_operators_form_one_physical_place():
    from crowd_platform.geography.registry import physical_places

    sites = pd.DataFrame({"site_id": ["xl:b", "telkomsel:a", "tri:c", "isat:far"],
                          "lon": [106.8290, 106.8270, 106.8300, 106.9000],
                          "lat": [-6.1760, -6.1754, -6.1762, -6.2000]})
    places = physical_places(sites, 300.0, AREA_CRS).set_index("site_id")["place_id"].to_dict()
    # a-b 230 m, b-c 120 m: one place by single linkage, named by its smallest site id.
    assert places == {"isat:far": "isat:far", "telkomsel:a": "telkomsel:a",
                      "tri:c": "telkomsel:a", "xl:b": "telkomsel:a"}
    assert set(physical_places(sites, 0.0, AREA_CRS)["place_id"]) == set(sites["site_id"])
    assert physical_places(sites.head(0), 100.0, AREA_CRS).empty
