"""The contract rules read the temp table stage_drop parses the drop into (one pass over the
bytes) instead of the staging Parquet. On a drop large enough for DuckDB's parallel CSV reader
and several row groups, both sources give every rule the same counts and example row numbers:
the table keeps file order (rowid + 1 = data row)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from crowd_platform.common.contracts import contract_for
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.ingestion.layout import drop_staged_table, stage_drop
from crowd_platform.ingestion.rules import RuleContext, compile_rules, run_duckdb_rules

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)
ROWS = 400_000
# Data rows (from 1) made bad, spread over the file: a key that is not a digest, a cell of the
# wrong format, an unparsable time, a repeated row.
BAD_KEY_ROWS = (7, 123_457, 250_001, 399_999)
BAD_CELL_ROWS = (2, 200_000, 300_003)
BAD_TIME_ROWS = (99_999, 333_333)


def _write_drop(path: Path) -> None:
    bad_keys = ", ".join(str(row - 1) for row in BAD_KEY_ROWS)
    bad_cells = ", ".join(str(row - 1) for row in BAD_CELL_ROWS)
    bad_times = ", ".join(str(row - 1) for row in BAD_TIME_ROWS)
    with duckdb.connect() as con:
        con.execute(f"""
            COPY (
              SELECT CASE WHEN i IN ({bad_keys}) THEN 'not-a-digest' ELSE sha256(CAST(i % 100000 AS VARCHAR)) END AS msisdn_hash,
                     CASE WHEN i IN ({bad_cells}) THEN 'x-' || i ELSE '510-10-' || (41000 + i % 50) || '-' || (100000 + (i * 7919) % 5000) END AS cell_global_id,
                     CASE WHEN i IN ({bad_times}) THEN 'yesterday' ELSE
                       strftime(TIMESTAMP '2020-03-31 08:00:00' + to_microseconds(CAST((i * 104729) % 900000000 AS BIGINT)), '%Y-%m-%d %H:%M:%S') END AS event_ts,
                     ['call','sms','data','location_update'][1 + (i % 4)] AS event_kind
              FROM range({ROWS}) t(i)
            ) TO '{path}' (FORMAT csv, DELIMITER ';', HEADER true, COMPRESSION gzip)""")


def test_rules_over_the_staged_table_match_the_staged_parquet(tmp_path: Path):
    settings = get_settings(tmp_path)
    settings.ensure_dirs()
    contract = contract_for(settings.contracts_dir, "telkomsel", "events")
    source = tmp_path / "drop.csv.gz"
    _write_drop(source)
    specs = compile_rules(contract)
    context = RuleContext(WINDOW, WINDOW + timedelta(minutes=15), ROWS, "telkomsel",
                          now=datetime(2020, 4, 1, tzinfo=timezone.utc))
    with connect(settings.warehouse_path) as con:
        con.execute("SET threads = 2")
        staged = stage_drop(con, source, contract, tmp_path / "staged.parquet", keep_table="one_pass_test")
        assert staged.rows == ROWS and staged.table == "one_pass_test"
        from_table = run_duckdb_rules(con, staged.path, specs, context, table=staged.table)
        drop_staged_table(con, staged.table)
        from_parquet = run_duckdb_rules(con, staged.path, specs, context)
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'one_pass_test'").fetchone()[0] == 0
    assert from_table == from_parquet
    by_rule = {result.rule: result for result in from_table}
    assert by_rule["subscriber_key_is_hmac_digest"].example_rows == list(BAD_KEY_ROWS)
    assert by_rule["subscriber_key_is_hmac_digest"].unexpected_count == len(BAD_KEY_ROWS)
    assert by_rule["cell_id_format"].example_rows == list(BAD_CELL_ROWS)
    assert by_rule["event_time_parsable"].example_rows == list(BAD_TIME_ROWS)
