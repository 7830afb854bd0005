"""Maps: the density choropleth never shows a value of k or less; coverage map fits UI metadata."""

import geopandas as gpd
import matplotlib.image
import pytest
import shapely

from crowd_platform.geography import maps


def grid(n: int = 3) -> gpd.GeoDataFrame:
    cells = [shapely.box(106.8 + 0.01 * i, -6.2 + 0.01 * j, 106.81 + 0.01 * i, -6.19 + 0.01 * j)
             for i in range(n) for j in range(n)]
    return gpd.GeoDataFrame({"district_code": [f"d{i}" for i in range(n * n)]}, geometry=cells, crs="EPSG:4326")


def test_k_applies_to_the_count_behind_a_value_not_to_the_value():
    codes = grid()["district_code"]
    # d0: a low density over a large district (4 000 people): shown although 3.0 <= k.
    # d2: a high density over a tiny district (12 people): suppressed although 250.0 > k.
    # d3: a value with no count: suppressed. d4: no value. d1: 16 people (> 15).
    densities = {"d0": 3.0, "d1": 40.0, "d2": 250.0, "d3": 90.0, "d4": None}
    people = {"d0": 4000, "d1": 16, "d2": 12, "d4": 500}
    values, status = maps.map_values(codes, densities, 15, people)
    assert status.tolist() == ["shown", "shown", "suppressed", "suppressed", "suppressed",
                               "no data", "no data", "no data", "no data"]
    assert sorted(values.dropna().tolist()) == [3.0, 40.0]


def test_density_map_renders_png(tmp_path):
    values = {"d0": 3.0, "d1": 15.0, "d2": 16.0, "d3": 250.0, "d4": None}
    people = {"d0": 300, "d1": 10, "d2": 600, "d3": 9000}
    path = maps.density_map(grid(), values, k=15, alert_codes=["d3"], title="test", path=tmp_path / "m.png",
                            counts_by_code=people)
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[2] in (3, 4)
    # Everything suppressed still renders (legend, hatching), without a colour scale.
    maps.density_map(grid(), {"d0": 1.0}, k=15, alert_codes=[], title="all suppressed", path=tmp_path / "s.png",
                     counts_by_code={"d0": 3})
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_density_map_needs_a_path():
    with pytest.raises(ValueError):
        maps.density_map(grid(), {}, k=15, alert_codes=(), title="", path=None, counts_by_code={})


def test_coverage_map_and_markdown(tmp_path):
    coverage = grid(2).assign(scope=["all", "all", "xl", "xl"], site_id=["a", "b", "c", "d"])
    coverage["lon"], coverage["lat"] = coverage.geometry.centroid.x, coverage.geometry.centroid.y
    path = maps.coverage_map(coverage, grid(2), tmp_path / "c.png")
    markdown = maps.png_markdown(path)
    assert markdown.startswith("![map](data:image/png;base64,")
    assert "too large" in maps.png_markdown(path, max_bytes=10)


def test_nice_scale_lengths():
    assert [maps._nice_length(value) for value in (0.7, 3.2, 18, 450)] == [0.5, 2, 10, 200]
