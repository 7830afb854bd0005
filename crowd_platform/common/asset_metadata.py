"""Dagster metadata an auditor can rely on for every warehouse asset: the table's column
schema, the rows this materialization wrote, and column lineage (which upstream columns each
output column is computed from). Counts only: never a row's values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg
import duckdb


def table_metadata(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    *,
    window: tuple[datetime, datetime] | None = None,
    time_column: str = "window_start",
    lineage: dict[str, list[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    columns = connection.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    if window is not None:
        rows = connection.execute(
            f'SELECT count(*) FROM "{table}" WHERE "{time_column}" >= ? AND "{time_column}" < ?', list(window)
        ).fetchone()[0]
    else:
        rows = connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    metadata: dict[str, Any] = {
        "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns]),
        "dagster/row_count": int(rows),
    }
    if lineage:
        metadata["dagster/column_lineage"] = dg.TableColumnLineage(
            deps_by_column={
                column: [dg.TableColumnDep(asset_key=dg.AssetKey(asset), column_name=upstream) for asset, upstream in deps]
                for column, deps in lineage.items()
            }
        )
    return metadata
