"""The coverage map frames the mainland; outlying islands (Kepulauan Seribu) go to an inset."""

import geopandas as gpd
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import shapely  # noqa: E402

from crowd_platform.geography import maps  # noqa: E402


def _world() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    cells = [shapely.box(106.8 + 0.1 * i, -6.3 + 0.1 * j, 106.9 + 0.1 * i, -6.2 + 0.1 * j) for i in range(3) for j in range(3)]
    island = shapely.box(106.5, -5.5, 106.52, -5.48)  # ~80 km north-west, tiny
    districts = gpd.GeoDataFrame({"district_code": [f"d{i}" for i in range(10)]}, geometry=cells + [island], crs="EPSG:4326")
    coverage = gpd.GeoDataFrame({"scope": ["all"] * 10, "site_id": [f"s{i}" for i in range(10)]},
                                geometry=cells + [island], crs="EPSG:4326")
    coverage["lon"], coverage["lat"] = coverage.geometry.centroid.x, coverage.geometry.centroid.y
    return districts, coverage


def test_mainland_framed_and_islands_inset(tmp_path, monkeypatch):
    districts, coverage = _world()
    assert maps.outlying_mask(districts).tolist() == [False] * 9 + [True]
    figures = []
    monkeypatch.setattr(maps, "_finish", lambda fig, path, dpi, compact=False: figures.append(fig) or path)
    maps.coverage_map(coverage, districts, tmp_path / "c.png")
    ax = figures[0].axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 > 106.7 and y1 < -5.8  # the main panel is the mainland (plus room for the inset), not the island
    insets = [child for child in ax.child_axes]
    assert len(insets) == 1
    (ix0, ix1), (iy0, iy1) = insets[0].get_xlim(), insets[0].get_ylim()
    assert ix0 < 106.5 < 106.52 < ix1 and iy0 < -5.5 < -5.48 < iy1
    plt.close("all")
