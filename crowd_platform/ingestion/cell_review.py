"""A cell list that would retire too many cells is held for review, not applied.

Operators send full cell lists; a cell missing from the list is decommissioned from that window
on. A truncated export (half the file) therefore looks like half the network switched off, and
the next good events drop is quarantined for unknown cells. A list that leaves out more than the
cells contract's ``max_retired_share`` of the operator's current cells is quarantined with a
clear reason; ``crowd-platform quarantine release`` (after a person checked it) applies it.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from crowd_platform.common.contracts import Contract
from crowd_platform.common.warehouse import read_sql

DEFAULT_MAX_RETIRED_SHARE = 0.2


def released_before(connection: duckdb.DuckDBPyConnection, drop_id: str) -> bool:
    """A person released this drop from quarantine: their decision stands (audit log, append-only)."""
    return bool(connection.execute("SELECT count(*) FROM audit_log WHERE action = 'drop_released' AND object_id = ?",
                                   [drop_id]).fetchone()[0])


def review_reason(connection: duckdb.DuckDBPyConnection, contract: Contract, operator: str, parquet: Path,
                  drop_id: str) -> str | None:
    """Why a staged cell list must wait for review, or None to apply it."""
    limit = float(contract.custom.get("max_retired_share", DEFAULT_MAX_RETIRED_SHARE))
    retired, current = connection.execute(read_sql("ingestion/cell_list_retires"),
                                          {"operator": operator, "parquet": str(parquet)}).fetchone()
    if not current or retired / current <= limit or released_before(connection, drop_id):
        return None
    return (f"cell list held for review: it would retire {retired} of {operator}'s {current} current cells "
            f"({retired / current:.0%}, more than {limit:.0%}); release it to apply")
