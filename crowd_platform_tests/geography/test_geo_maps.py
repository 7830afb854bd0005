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


def test_values_of_k_or_less_never_reach_the_colour_scale():
    codes = grid()["district_code"]
    values, status = maps.map_values(codes, {"d0": 3.0, "d1": 15.0, "d2": 16.0, "d3": 250.0, "d4": None}, k=15)
    assert status.tolist() == ["suppressed", "suppressed", "shown", "shown", "suppressed",
                               "no data", "no data", "no data", "no data"]
    assert sorted(values.dropna().tolist()) == [16.0, 250.0]


def test_density_map_renders_png(tmp_path):
    values = {"d0": 3.0, "d1": 15.0, "d2": 16.0, "d3": 250.0, "d4": None}
    path = maps.density_map(grid(), values, k=15, alert_codes=["d3"], title="test", path=tmp_path / "m.png")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[2] in (3, 4)
    # Everything suppressed still renders (legend, hatching), without a colour scale.
    maps.density_map(grid(), {"d0": 1.0}, k=15, alert_codes=[], title="all suppressed", path=tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_density_map_needs_a_path():
    with pytest.raises(ValueError):
        maps.density_map(grid(), {}, k=15, alert_codes=(), title="", path=None)


def test_coverage_map_and_markdown(tmp_path):
    coverage = grid(2).assign(scope=["all", "all", "xl", "xl"], site_id=["a", "b", "c", "d"])
    coverage["lon"], coverage["lat"] = coverage.geometry.centroid.x, coverage.geometry.centroid.y
    path = maps.coverage_map(coverage, grid(2), tmp_path / "c.png")
    markdown = maps.png_markdown(path)
    assert markdown.startswith("![map](data:image/png;base64,")
    assert "too large" in maps.png_markdown(path, max_bytes=10)


def test_nice_scale_lengths():
    assert [maps._nice_length(value) for value in (0.7, 3.2, 18, 450)] == [0.5, 2, 10, 200]
