"""Geography assets end to end on real DuckDB and real Dagster (Jakarta config, tiny cell lists).

The cell-list drops are written the way ingestion publishes them: a canonical Parquet under
lake/cells/operator=<op>/<drop_id>.parquet plus an accepted `drops` row (feed='cells').
"""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest

from crowd_platform.geography.assets import geography_assets
from crowd_platform.geography.checks import geography_checks
from crowd_platform.geography import coverage, registry
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform_tests.support.cell_lists import publish_cells

SNAPSHOT_1 = datetime(2020, 3, 20, tzinfo=timezone.utc)
SNAPSHOT_2 = SNAPSHOT_1 + timedelta(days=7)


def reference_cells(per_operator: int = 30) -> pd.DataFrame:
    settings = get_settings()
    cells = registry.opencellid_cells(settings.config.geography.cells_reference, settings.contracts_dir)
    cells = cells.drop_duplicates("cell_id", keep=False)
    return cells.groupby("operator", group_keys=False).head(per_operator).reset_index(drop=True)


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    home = tmp_path_factory.mktemp("crowd_home")
    cells = reference_cells()
    telkomsel = cells[cells["operator"] == "telkomsel"].reset_index(drop=True)
    for operator, part in cells.groupby("operator"):
        publish_cells(home, operator, f"{operator}-cells-1", SNAPSHOT_1, part)

    # Second telkomsel snapshot: one cell gone, one moved ~300 m, one added, one moved 10 m
    # (noise, same version), and broken rows that must be rejected with a reason.
    second = telkomsel.iloc[1:].copy()
    second.loc[second.index[0], "lat"] += 0.003
    second.loc[second.index[1], "lon"] += 0.0001
    added = telkomsel.iloc[[2]].assign(cell_id="510-10-99999-1", lon=106.8456, lat=-6.2088)
    broken = pd.DataFrame({
        "cell_id": ["510-10-1-2", "510-10-1-3", "510-10-1-4", "510-10-1-5", "510-10-1-6", "510-10-1-6",
                    "510-11-1-7", "not-a-cell"],
        "lon": [0.0, -6.2, 151.2, 107.61, 106.80, 106.81, 106.82, 106.83],
        "lat": [0.0, 106.8, -33.9, -6.91, -6.20, -6.21, -6.22, -6.23],
        "radio": "LTE",
    })
    publish_cells(home, "telkomsel", "telkomsel-cells-2", SNAPSHOT_2, pd.concat([second, added, broken]))

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*geography_assets, *geography_checks],
            resources={"crowd": CrowdPlatform(home=str(home))},
            instance=instance,
            raise_on_error=False,
        )
    with connect(home / "warehouse.duckdb", read_only=True) as con:
        yield {"result": result, "home": home, "con": con, "telkomsel": telkomsel}


def test_all_assets_materialize(materialized):
    assert materialized["result"].success
    con = materialized["con"]
    levels = dict(con.execute("SELECT level, count(*) FROM districts GROUP BY ALL").fetchall())
    assert levels == {"kelurahan": 270, "kecamatan": 46, "kabkota": 6}
    for level in levels:
        assert (materialized["home"] / "geo" / f"districts_{level}.parquet").exists()


def test_districts_codes_areas_population(materialized):
    con = materialized["con"]
    selatan = con.execute(
        "SELECT code_kemendagri, area_km2, population FROM districts WHERE level='kabkota' AND district_code='3171'"
    ).fetchone()
    assert selatan[0] == "31.74"  # BPS 3171 = Kemendagri 31.74
    assert selatan[1] == pytest.approx(144.8, rel=0.01)
    totals = dict(con.execute("SELECT level, sum(population) FROM districts GROUP BY ALL").fetchall())
    assert totals["kelurahan"] == pytest.approx(totals["kabkota"]) == pytest.approx(11_038_216)
    water = con.execute("SELECT max(population), min(area_km2) FROM districts WHERE NOT is_admin_unit").fetchone()
    assert water[0] == 0 and water[1] > 0
    # Every kelurahan rolls up to one kecamatan and one kab/kota.
    rollup = con.execute("SELECT level, count(DISTINCT district_code_finest) FROM district_hierarchy GROUP BY ALL").fetchall()
    assert dict(rollup) == {"kelurahan": 270, "kecamatan": 270, "kabkota": 270}


def test_registry_versions(materialized):
    con, telkomsel = materialized["con"], materialized["telkomsel"]

    def versions(cell_id: str):
        return con.execute("SELECT valid_from, valid_to, lat FROM bts_registry WHERE cell_id=? ORDER BY valid_from",
                           [cell_id]).fetchall()

    gone = versions(telkomsel.loc[0, "cell_id"])
    assert len(gone) == 1 and gone[0][1] == SNAPSHOT_2
    moved = versions(telkomsel.loc[1, "cell_id"])
    assert [row[1] for row in moved] == [SNAPSHOT_2, None] and moved[1][2] == pytest.approx(telkomsel.loc[1, "lat"] + 0.003)
    jitter = versions(telkomsel.loc[2, "cell_id"])
    assert len(jitter) == 1 and jitter[0][1] is None
    added = versions("510-10-99999-1")
    assert len(added) == 1 and added[0][0] == SNAPSHOT_2
    # Other operators had one snapshot: all their cells stay open.
    assert con.execute("SELECT count(*) FROM bts_registry WHERE operator<>'telkomsel' AND valid_to IS NOT NULL").fetchone()[0] == 0


def test_rejects_have_reasons(materialized):
    con = materialized["con"]
    reasons = dict(con.execute("SELECT cell_id, reason FROM bts_registry_rejects").fetchall())
    assert reasons["510-10-1-2"] == "null_island"
    assert reasons["510-10-1-3"] == "swapped_lon_lat"
    assert reasons["510-10-1-4"] == "outside_area"       # Sydney: far outside the configured area
    assert reasons["510-10-1-5"] == "outside_area"      # Bandung: in Indonesia, not in Jakarta
    assert reasons["510-10-1-6"] == "duplicate_cell_id"
    assert reasons["510-11-1-7"] == "mnc_not_operator"  # XL's MNC in Telkomsel's list
    assert reasons["not-a-cell"] == "malformed_cell_id"
    assert con.execute("SELECT count(*) FROM bts_registry WHERE cell_id LIKE '510-10-1-%'").fetchone()[0] == 0
    check = [evaluation for evaluation in materialized["result"].get_asset_check_evaluations()
             if evaluation.check_name == "registry_rejects"][0]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["rejects_by_reason"].value["duplicate_cell_id"] == 2


def test_coverage_and_weights(materialized):
    con = materialized["con"]
    scopes = {row[0] for row in con.execute("SELECT DISTINCT scope FROM bts_coverage").fetchall()}
    assert scopes == {"all", "indosat", "smartfren", "telkomsel", "tri", "xl"}
    land = con.execute("SELECT sum(land_area_km2) FROM districts WHERE level='kelurahan'").fetchone()[0]
    telkomsel_area = con.execute("SELECT sum(area_km2) FROM bts_coverage WHERE scope='telkomsel'").fetchone()[0]
    assert telkomsel_area == pytest.approx(land, rel=1e-6)
    worst = con.execute("SELECT max(abs(s - 1)) FROM (SELECT sum(weight) s FROM bts_district_weights GROUP BY site_id, scope)").fetchone()[0]
    assert worst < 1e-9
    checks = {evaluation.check_name: evaluation.passed for evaluation in materialized["result"].get_asset_check_evaluations()}
    assert checks["weights_sum_to_one"]
    coverage_event = materialized["result"].asset_materializations_for_node("bts_coverage")[0]
    markdown = coverage_event.metadata["map"].value
    assert markdown.startswith("![coverage map](data:image/png;base64,") and len(markdown) < 280_000
    assert (materialized["home"] / "geo" / "coverage_map.png").exists()


def test_cells_covering(materialized):
    con = materialized["con"]
    site, district = con.execute(
        "SELECT w.site_id, w.district_code FROM bts_district_weights w WHERE scope='telkomsel' ORDER BY weight DESC LIMIT 1"
    ).fetchone()
    cells = coverage.cells_covering(con, "telkomsel", [district])
    site_cells = {row[0] for row in con.execute(
        "SELECT cell_id FROM bts_registry WHERE site_id=? AND valid_to IS NULL", [site]).fetchall()}
    assert site_cells and site_cells <= set(cells)
    kecamatan = con.execute("SELECT district_code FROM district_hierarchy WHERE district_code_finest=? AND level='kecamatan'",
                            [district]).fetchone()[0]
    assert set(cells) <= set(coverage.cells_covering(con, "telkomsel", [kecamatan]))
    # A decommissioned cell is never broadcast to now, but was at its time.
    gone = materialized["telkomsel"].loc[0, "cell_id"]
    gone_district = con.execute(
        "SELECT w.district_code FROM bts_registry r JOIN bts_district_weights w ON w.site_id=r.site_id AND w.scope='telkomsel' "
        "WHERE r.cell_id=? LIMIT 1", [gone]).fetchone()[0]
    assert gone not in coverage.cells_covering(con, "telkomsel", [gone_district])
    assert gone in coverage.cells_covering(con, "telkomsel", [gone_district], at=SNAPSHOT_1 + timedelta(days=1))
    assert coverage.cells_covering(con, "telkomsel", []) == []
