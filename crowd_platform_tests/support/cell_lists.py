"""Cell-list drops written the way ingestion publishes them (geography tests)."""

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from crowd_platform.common.warehouse import connect


def publish_cells(home: Path, operator: str, drop_id: str, valid_from: datetime, cells: pd.DataFrame) -> None:
    """A canonical Parquet under lake/cells/operator=<op>/<drop_id>.parquet plus an accepted
    `drops` row (feed='cells')."""
    relative = Path("lake/cells") / f"operator={operator}" / f"{drop_id}.parquet"
    (home / relative).parent.mkdir(parents=True, exist_ok=True)
    cells[["cell_id", "lon", "lat", "radio"]].to_parquet(home / relative, index=False)
    with connect(home / "warehouse.duckdb") as con:
        con.execute(
            "INSERT INTO drops (drop_id, operator, feed, status, window_start, window_end, lake_path, row_count) "
            "VALUES (?, ?, 'cells', 'accepted', ?, ?, ?, ?)",
            [drop_id, operator, valid_from, valid_from + timedelta(minutes=15), str(relative), len(cells)],
        )
