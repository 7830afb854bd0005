"""Maps of the publication (UI metadata of district_density and crowd_alerts, the auditor report).

They read district_density_published and crowd_alerts_published only: a value the publication
hides is drawn "suppressed" (hatched grey, no number, no colour), and the colour scale is built
from shown values only. The Jakarta map frames the mainland and puts Kepulauan Seribu in an inset.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import geopandas as gpd
import matplotlib.image
import pytest
import shapely

from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import PROJECT_ROOT, get_settings
from crowd_platform.common.warehouse import apply_schema, connect
from crowd_platform.geography import maps

K = 15
T0 = datetime(2020, 3, 27, 4, 30, tzinfo=timezone.utc)
STEP = timedelta(minutes=15)
SECRET = 7  # a count at or below k, only in the internal tables


def grid(n: int = 3, island: bool = False) -> gpd.GeoDataFrame:
    cells = [shapely.box(106.8 + 0.01 * i, -6.2 + 0.01 * j, 106.81 + 0.01 * i, -6.19 + 0.01 * j)
             for i in range(n) for j in range(n)]
    codes = [f"d{i}" for i in range(n * n)]
    if island:
        cells.append(shapely.box(106.55, -5.60, 106.552, -5.598))
        codes.append("island")
    return gpd.GeoDataFrame({"district_code": codes}, geometry=cells, crs="EPSG:4326")


def test_suppressed_rows_are_drawn_suppressed_and_stay_out_of_the_colour_scale(tmp_path, monkeypatch):
    drawn = []
    original = maps._draw_layers
    monkeypatch.setattr(maps, "_draw_layers", lambda ax, frame, norm, *rest, **kw: (
        drawn.append((frame.copy(), norm)), original(ax, frame, norm, *rest, **kw))[-1])
    # d1 is 12 people (<= k) with a density of 9000 that would top the scale; d2 has no count.
    values = {"d0": 100.0, "d1": 9000.0, "d2": 50.0, "d3": 300.0}
    counts = {"d0": 400, "d1": 12, "d3": 900}
    path = maps.density_map(grid(), values, K, title="t", path=tmp_path / "m.png", counts_by_code=counts,
                            alert_points=[(106.805, -6.195)], compact=True)
    frame, norm = drawn[0]
    status = dict(zip(frame["district_code"], frame["status"]))
    assert status["d1"] == status["d2"] == "suppressed" and status["d0"] == status["d3"] == "shown"
    assert frame.loc[frame["status"] == "suppressed", "value"].isna().all()
    assert (norm.vmin, norm.vmax) == (100.0, 300.0)  # 9000 never reaches the scale or its ticks
    assert Path(path).stat().st_size < maps.MAX_METADATA_BYTES
    assert matplotlib.image.imread(path).shape[0] > 200


def test_outlying_islands_go_to_an_inset_not_into_the_frame():
    mask = maps.outlying_mask(grid(island=True))
    assert mask.tolist() == [False] * 9 + [True]
    assert not maps.outlying_mask(grid()).any()
    # Half the area apart (an archipelago): frame everything together.
    two = gpd.GeoDataFrame({"district_code": ["a", "b"]},
                           geometry=[shapely.box(0, 0, 1, 1), shapely.box(3, 3, 4, 4)], crs="EPSG:4326")
    assert not maps.outlying_mask(two).any()


def test_local_label_in_the_configured_zone():
    assert maps.local_label(T0, "Asia/Jakarta", 15) == "2020-03-27 11:30–11:45 WIB (UTC+07:00)"


def _districts_rows(con) -> list[str]:
    """A 3x3 grid of kelurahan (rank 0) in one kecamatan (rank 1), and an island kelurahan."""
    frame = grid(island=True)
    for code, geometry in zip(frame["district_code"], frame.geometry):
        con.execute("INSERT INTO districts (district_code, level, level_rank, name, parent_code, is_admin_unit, "
                    "area_km2, population, geometry_wkb, land_area_km2) VALUES (?, 'kelurahan', 0, ?, 'k1', true, 1.0, "
                    "100, ?, 1.0)", [code, f"Kel {code}", shapely.to_wkb(geometry)])
    con.execute("INSERT INTO districts (district_code, level, level_rank, name, is_admin_unit, area_km2, geometry_wkb, "
                "land_area_km2) VALUES ('k1', 'kecamatan', 1, 'Kec 1', true, 9.0, ?, 9.0)",
                [shapely.to_wkb(shapely.union_all(list(frame.geometry[:9])))])
    return list(frame["district_code"])


def published_warehouse(home: Path) -> None:
    with connect(home / "warehouse.duckdb") as con:
        apply_schema(con)
        codes = _districts_rows(con)
        for window in (T0 - STEP, T0):
            for number, code in enumerate(codes):
                hidden = code in ("d4", "d5")
                people = None if hidden else 100 + 50 * number + (10 if window == T0 else 0)
                con.execute("INSERT INTO district_density_published VALUES (?, 'kelurahan', ?, ?, ?, ?, ?, 1.0)",
                            [window, code, people, people, hidden, "primary" if hidden else None])
                # Internal rows differ from the publication: a map drawn from them would show SECRET.
                con.execute("INSERT INTO district_density (window_start, level, district_code, subscribers, people_estimate, "
                            "density_per_km2, operators_reporting, drop_ids, run_id) VALUES (?, 'kelurahan', ?, ?, ?, ?, 5, "
                            "['x'], 'r')", [window, code, SECRET, SECRET, SECRET])
        con.execute("INSERT INTO site_places VALUES ('tsel:s1', 'place-1', 106.805, -6.195)")
        con.execute("INSERT INTO bts_registry (cell_id, operator, site_id, lon, lat, valid_from) "
                    "VALUES ('510-10-1-1', 'telkomsel', 'lonely-site', 106.825, -6.185, ?)", [T0 - timedelta(days=9)])
        alerts = [("a-district", "kecamatan", "k1", T0 - STEP, T0, None),
                  ("a-site", "site", "place-1", T0, T0, None),
                  ("a-lonely", "site", "lonely-site", T0, T0, None),
                  ("a-closed-before", "kelurahan", "d0", T0 - 8 * STEP, T0 - 6 * STEP, T0 - 5 * STEP)]
        for alert_id, level, place, opened, last, closed in alerts:
            con.execute("INSERT INTO crowd_alerts_published (alert_id, level, place_id, state, severity, opened_window, "
                        "last_window, closed_window, people_estimate, evidence_suppressed) "
                        "VALUES (?, ?, ?, 'open', 1, ?, ?, ?, NULL, true)", [alert_id, level, place, opened, last, closed])


def test_published_density_map_reads_the_publication_only(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CROWD_HOME", str(home))
    settings = get_settings()
    settings.ensure_dirs()
    published_warehouse(home)
    seen = {}
    original = maps.density_map

    def spy(districts_gdf, values, k, alert_codes=(), title="", path=None, **kwargs):
        seen.update(values=dict(values), counts=dict(kwargs["counts_by_code"]), points=list(kwargs["alert_points"]),
                    shapes=kwargs["alert_shapes"], title=title, k=k)
        return original(districts_gdf, values, k, alert_codes, title, path, **kwargs)

    monkeypatch.setattr(maps, "density_map", spy)
    with connect(settings.warehouse_path, read_only=True) as con:
        drawn = maps.published_density_map(con, settings, T0, tmp_path / "map.png")
    assert drawn.level == "kelurahan" and drawn.window == T0
    assert seen["k"] == settings.k_anonymity
    # Published values only: the hidden districts are None, nothing is the internal SECRET.
    assert seen["values"]["d4"] is None and seen["values"]["d5"] is None
    assert seen["values"]["d0"] == 110.0 and seen["counts"]["d0"] == 110.0
    assert SECRET not in set(seen["values"].values()) | set(seen["counts"].values())
    assert all(count is None or count > K for count in seen["counts"].values())
    assert (drawn.districts_shown, drawn.districts_suppressed) == (8, 2)
    # Alerts live in the window: the kecamatan polygon, the place's centre, and a site that is its
    # own place (its cells' mean position); the alert closed earlier is not drawn.
    assert drawn.district_alerts == 1 and seen["shapes"] is not None and len(seen["shapes"]) == 1
    assert sorted(seen["points"]) == [(106.805, -6.195), (106.825, -6.185)]
    assert sorted(drawn.alert_ids) == ["a-district", "a-lonely", "a-site"]
    assert "11:30–11:45 WIB" in seen["title"]
    assert drawn.bytes < maps.MAX_METADATA_BYTES


def test_map_sql_never_names_an_internal_table():
    internal = ("district_density", "bts_presence", "density_baseline", "crowd_alerts", "alert_transitions",
                "alert_place_state", "district_presence_daily")
    files = sorted((PROJECT_ROOT / "sql" / "geography").glob("maps_*.sql"))
    files.append(PROJECT_ROOT / "sql" / "governance" / "report_busiest_window.sql")
    assert len(files) >= 5
    for path in files:
        text = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))
        for table in internal:
            assert not re.search(rf"\b{table}\b(?!_)", text), (path.name, table)


def test_range_map_markdown_for_metadata(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CROWD_HOME", str(home))
    settings = get_settings()
    settings.ensure_dirs()
    published_warehouse(home)
    with connect(settings.warehouse_path, read_only=True) as con:
        markdown, summary = maps.range_map_markdown(con, settings, T0 - 4 * STEP, T0 + STEP, alt="published density map")
        assert markdown.startswith("![published density map](data:image/png;base64,")
        assert len(markdown) < maps.MAX_METADATA_BYTES * 1.4
        assert summary["window"] == T0.isoformat() and summary["districts_suppressed"] == 2
        alert_md, alert_summary = maps.range_map_markdown(con, settings, T0 - 10 * STEP, T0 + STEP, alt="alerts",
                                                          alerts_of_range=True)
        assert alert_md.startswith("![alerts](data:image/png;base64,")
        assert "a-closed-before" in alert_summary["alert_ids"]  # open at some time in the range
        empty, nothing = maps.range_map_markdown(con, settings, T0 + 10 * STEP, T0 + 11 * STEP, alt="m")
        assert "no published density" in empty and nothing["window"] is None


def test_asset_metadata_attaches_one_map_and_never_fails_the_step(tmp_path, monkeypatch):
    from crowd_platform.alerts.assets import _alert_map_metadata
    from crowd_platform.density.assets import _density_map_metadata

    home = tmp_path / "home"
    monkeypatch.setenv("CROWD_HOME", str(home))
    published_warehouse(home)
    crowd = CrowdPlatform(home=str(home))
    context = dg.build_asset_context()
    with crowd.warehouse() as con:
        metadata = _density_map_metadata(context, crowd, con, T0 - STEP, T0 + STEP)
        assert metadata["density_map"].value.startswith("![published density map](data:image/png;base64,")
        assert metadata["density_map_summary"].value["window"] == T0.isoformat()
        alert_metadata = _alert_map_metadata(context, crowd, con, T0 - STEP, T0 + STEP)
        assert alert_metadata["alert_map"].value.startswith("![crowd alert map](data:image/png;base64,")

        def broken(*args, **kwargs):
            raise RuntimeError("no display")

        monkeypatch.setattr(maps, "range_map_markdown", broken)
        assert "not drawn" in _density_map_metadata(context, crowd, con, T0, T0 + STEP)["density_map"].value
        assert "not drawn" in _alert_map_metadata(context, crowd, con, T0, T0 + STEP)["alert_map"].value


@pytest.fixture(scope="module")
def jakarta_home(tmp_path_factory):
    from crowd_platform.geography.assets import districts

    home = tmp_path_factory.mktemp("jakarta")
    with dg.instance_for_test() as instance:
        assert dg.materialize([districts], resources={"crowd": CrowdPlatform(home=str(home))}, instance=instance).success
    with connect(home / "warehouse.duckdb") as con:
        con.execute(
            "INSERT INTO district_density_published SELECT ?, level, district_code, "
            "CASE WHEN hash(district_code) % 7 = 0 THEN NULL ELSE 200 + hash(district_code) % 3000 END, "
            "CASE WHEN hash(district_code) % 7 = 0 THEN NULL ELSE (200 + hash(district_code) % 3000) / greatest(land_area_km2, 0.05) END, "
            "hash(district_code) % 7 = 0, NULL, 1.0 FROM districts", [T0])
    return home


def test_jakarta_map_frames_the_mainland_with_kepulauan_seribu_inset(jakarta_home, monkeypatch):
    monkeypatch.setenv("CROWD_HOME", str(jakarta_home))
    settings = get_settings()
    with connect(settings.warehouse_path, read_only=True) as con:
        kelurahan = maps.map_districts(con, "kelurahan")
        outlying = kelurahan.loc[maps.outlying_mask(kelurahan), "district_code"].astype(str)
        assert len(outlying) and all(code.startswith("3101") for code in outlying)  # Kepulauan Seribu only
        markdown, summary = maps.range_map_markdown(con, settings, T0, T0 + STEP, alt="published density map")
    assert summary["level"] == "kelurahan" and summary["districts_suppressed"] > 0
    assert summary["png_bytes"] < maps.MAX_METADATA_BYTES
    assert markdown.startswith("![published density map](data:image/png;base64,")
