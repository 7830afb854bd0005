"""CROWD_DUCKDB_MEMORY_LIMIT bounds every warehouse connection; a malformed value is refused."""

from __future__ import annotations

import pytest

from crowd_platform.common.warehouse import MEMORY_LIMIT_ENV, connect


def test_memory_limit_applies_to_warehouse_connections(tmp_path, monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1GB")
    with connect(tmp_path / "warehouse.duckdb") as con:
        # DuckDB reports the limit in its own units (1GB = 1000 MB -> "953.6 MiB").
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "953.6 MiB"
    monkeypatch.delenv(MEMORY_LIMIT_ENV)
    with connect(tmp_path / "warehouse.duckdb") as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != "953.6 MiB"


@pytest.mark.parametrize("value", ["lots", "4GB'; DROP TABLE drops; --", "-1GB"])
def test_malformed_memory_limit_is_refused_with_one_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, value)
    with pytest.raises(ValueError, match=f"^{MEMORY_LIMIT_ENV} must look like 4GB"):
        with connect(tmp_path / "warehouse.duckdb"):
            pass
