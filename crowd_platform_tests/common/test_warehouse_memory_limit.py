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


def test_private_engines_running_together_share_the_limit_and_get_their_copies(tmp_path, monkeypatch):
    import pyarrow as pa

    from crowd_platform.common.warehouse import private_engine

    monkeypatch.setenv(MEMORY_LIMIT_ENV, "4GB")
    engine = private_engine(tmp_path, share=4, tables={"bts_registry": pa.table({"cell_id": ["a", "b"]})})
    try:
        assert engine.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "953.6 MiB"  # 4GB / 4
        assert engine.execute("SELECT count(*) FROM bts_registry").fetchone()[0] == 2
    finally:
        engine.close()
    assert list(tmp_path.iterdir()) == []  # nothing spilled, nothing left behind
