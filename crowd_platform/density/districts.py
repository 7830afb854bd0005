"""People per district and window, and its k-anonymised publication.

``district_density`` is internal; ``district_density_published`` is written by the same
transaction through crowd_platform.publication.kanon and verified before commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from crowd_platform.common import audit
from crowd_platform.publication.kanon import suppress_hierarchy
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import fetch_dicts, read_sql, transaction
from crowd_platform.common.crashpoints import crash_point
from crowd_platform.density.completeness import record_completeness
from crowd_platform.density.presence import DensityError, register_geography

PUBLISH_INPUT_SCHEMA = {
    "window_start": pl.Datetime("us", "UTC"), "level": pl.String, "district_code": pl.String,
    "parent_code": pl.String, "value": pl.Float64, "people_estimate": pl.Int64, "density_per_km2": pl.Float64,
    "known": pl.Boolean,
}


def publish_density(con: duckdb.DuckDBPyConnection, k: int, start: datetime, end: datetime) -> dict[str, int]:
    """Write district_density_published for [start, end): k-anonymised, one hierarchy per window.

    Runs inside the caller's transaction and verifies its own output before returning
    (write-audit-publish: a violation raises and the transaction rolls back).
    """
    source = pl.DataFrame(fetch_dicts(con, read_sql("density/district_density_published_input"), {"start": start, "end": end}),
                          schema=PUBLISH_INPUT_SCHEMA)
    con.execute(read_sql("density/district_density_published_delete"), {"start": start, "end": end})
    if source.is_empty():
        return {"published": 0, "primary": 0, "complementary": 0}
    parts = [
        suppress_hierarchy(window_rows, k)
        for _, window_rows in source.group_by("window_start", maintain_order=True)
    ]
    decided = pl.concat(parts)
    published = decided.select(
        "window_start",
        "level",
        "district_code",
        pl.when(pl.col("suppression").is_null()).then(pl.col("people_estimate")).otherwise(None).alias("people_estimate"),
        pl.when(pl.col("suppression").is_null()).then(pl.col("density_per_km2")).otherwise(None).alias("density_per_km2"),
        pl.col("suppression").is_not_null().alias("suppressed"),
        "suppression",
    )
    leaked = published.filter(pl.col("people_estimate").is_not_null() & (pl.col("people_estimate") <= k)).height
    if leaked:
        raise DensityError(f"k-anonymity violated for {leaked} published rows; nothing published")
    con.register("published_frame", published)
    con.execute(
        "INSERT INTO district_density_published (window_start, level, district_code, people_estimate, "
        "density_per_km2, suppressed, suppression) SELECT window_start, level, district_code, people_estimate, "
        "density_per_km2, suppressed, suppression FROM published_frame"
    )
    # Remember what was shown, so a later version of these windows keeps it in mind.
    con.execute(
        "INSERT INTO district_density_shown SELECT f.window_start, f.level, f.district_code, f.people_estimate "
        "FROM published_frame AS f WHERE f.people_estimate IS NOT NULL AND NOT EXISTS (SELECT 1 FROM district_density_shown AS s "
        "WHERE s.window_start = f.window_start AND s.level = f.level AND s.district_code = f.district_code "
        "AND s.people_estimate = f.people_estimate)")
    con.unregister("published_frame")
    counts = decided["suppression"].value_counts()
    by_kind = dict(zip(counts["suppression"].to_list(), counts["count"].to_list()))
    return {
        "published": by_kind.get(None, 0),
        "primary": by_kind.get("primary", 0),
        "complementary": by_kind.get("complementary", 0),
    }


def compute_district_density(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                             run_id: str | None) -> dict[str, Any]:
    """Replace district_density and district_density_published for [start, end)."""
    operators = [row[0] for row in con.execute(
        "SELECT DISTINCT operator FROM bts_presence WHERE window_start >= $start AND window_start < $end",
        {"start": start, "end": end}).fetchall()]
    with transaction(con):
        register_geography(con, settings, operators)
        con.execute(read_sql("density/district_density_delete"), {"start": start, "end": end})
        con.execute(read_sql("density/district_density"),
                    {"start": start, "end": end, "multi_sim_factor": settings.config.density.multi_sim_factor, "run_id": run_id})
        rows, windows, levels = con.execute(
            "SELECT count(*), count(DISTINCT window_start), count(DISTINCT level) FROM district_density "
            "WHERE window_start >= $start AND window_start < $end", {"start": start, "end": end}).fetchone()
        completeness = record_completeness(con, settings, start, end, run_id)
        suppression = publish_density(con, settings.k_anonymity, start, end)
        # Completeness is about operators and market shares, never about people: published as is.
        con.execute("UPDATE district_density_published AS p SET completeness = w.completeness FROM window_completeness AS w "
                    "WHERE p.window_start = w.window_start AND p.window_start >= ? AND p.window_start < ?", [start, end])
        result = {"rows": rows, "windows": windows, "levels": levels, "operators_with_data": len(operators),
                  "k": settings.k_anonymity, **completeness,
                  **{f"published_{key}": value for key, value in suppression.items()}}
        audit.append(con, "district_density.materialize", purpose=settings.purpose, object_kind="window_range",
                     object_id=f"{start.isoformat()}/{end.isoformat()}", run_id=run_id, details=result)
        crash_point("density_writing")
    return result
