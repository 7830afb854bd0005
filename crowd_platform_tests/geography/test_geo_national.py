"""Switching to the national geography is configuration only (CROWD_CONFIG)."""

import dagster as dg
import pytest

from crowd_platform.geography.assets import districts
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import PROJECT_ROOT
from crowd_platform.common.warehouse import connect


def test_national_config_builds_kecamatan_kabkota_provinsi(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWD_CONFIG", str(PROJECT_ROOT / "config" / "platform_national.yaml"))
    with dg.instance_for_test() as instance:
        result = dg.materialize([districts], resources={"crowd": CrowdPlatform(home=str(tmp_path))}, instance=instance)
    assert result.success
    with connect(tmp_path / "warehouse.duckdb", read_only=True) as con:
        counts = dict(con.execute("SELECT level, count(*) FROM districts GROUP BY ALL").fetchall())
        assert counts == {"kecamatan": 7068, "kabkota": 522, "provinsi": 34}
        population = dict(con.execute("SELECT level, sum(population) FROM districts GROUP BY ALL").fetchall())
        # Kemendagri 2025 total, identical at every level (distributed down, summed up).
        for level in counts:
            assert population[level] == pytest.approx(284_973_643)
        dki = con.execute("SELECT area_km2, population FROM districts WHERE level='provinsi' AND district_code='31'").fetchone()
        assert dki[0] == pytest.approx(660, rel=0.05) and dki[1] == pytest.approx(11_038_216)
        toba = con.execute("SELECT is_admin_unit, population FROM districts WHERE level='kabkota' AND district_code='1288'").fetchone()
        assert toba == (False, 0.0)
        rollup = con.execute(
            "SELECT district_code FROM district_hierarchy WHERE district_code_finest='3171010' ORDER BY level").fetchall()
        assert [row[0] for row in rollup] == ["3171", "3171010", "31"]
