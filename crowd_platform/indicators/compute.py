"""Indicators for one local day, in DuckDB, each step replacing its day in one transaction with
its audit record (DELETE + INSERT; the published copy in the same transaction).

Inputs are those of density (``density.presence.load_presence_inputs``: the accepted event drops
of the local day's windows, listed in ``drops.lake_path``, never a lake glob; each event joined to
the registry version of its cell) and its geography (``register_geography``: site -> district
weights of the operator's scope). Results and audit details hold counts of rows, days, drops and
operators, never a subscriber-level value; a count that counts people is masked (kanon.mask_counts).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import duckdb
import polars as pl

from crowd_platform.common import audit
from crowd_platform.common.calendar import local_day_bounds, local_days
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import fetch_dicts, read_sql, transaction
from crowd_platform.density.presence import load_presence_inputs, register_geography
from crowd_platform.indicators.protect import (
    IndicatorsError,
    assert_k_anonymous,
    protect_flows,
    shown_key,
    suppress_slices,
)
from crowd_platform.publication.kanon import mask_counts

FLOW_KINDS = ("consecutive_days", "morning_evening")
DAILY_LOCATION_RULES = ("last", "modal")


def _zone(settings: Settings) -> str:
    return settings.config.density.local_timezone


def _audit(con, settings: Settings, action: str, day: date, run_id: str | None, details: dict[str, Any]) -> None:
    audit.append(con, action, purpose=settings.purpose, object_kind="local_day", object_id=day.isoformat(),
                 run_id=run_id, details=details)


def _load_day(con: duckdb.DuckDBPyConnection, settings: Settings, day: date) -> list[dict[str, Any]]:
    """Register the local day's accepted event drops (presence_events) and, if any, the geography."""
    inputs = load_presence_inputs(con, settings, *local_day_bounds(day, _zone(settings)))
    if inputs:
        register_geography(con, settings, sorted({row["operator"] for row in inputs}))
    return inputs


def _ancestry(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(read_sql("density/district_density_ancestry"))


# ------------------------------------------------------------------ per-subscriber locations
def compute_subscriber_daily_location(con: duckdb.DuckDBPyConnection, settings: Settings, day: date,
                                      run_id: str | None) -> dict[str, Any]:
    """Replace subscriber_daily_location (rules last and modal over the day; morning and evening
    with indicators.flow_rule) and indicator_operator_days for local day ``day``."""
    config = settings.config.indicators
    with transaction(con):
        con.execute(read_sql("indicators/subscriber_daily_location_delete"), {"day": day})
        con.execute(read_sql("indicators/indicator_operator_days_delete"), {"day": day})
        inputs = _load_day(con, settings, day)
        if inputs:
            con.execute(read_sql("indicators/indicator_operator_days"), {"day": day, "run_id": run_id})
            con.execute(read_sql("indicators/indicator_site_district"))
            con.execute(read_sql("indicators/subscriber_daily_location"), {
                "day": day, "run_id": run_id, "zone": _zone(settings), "flow_rule": config.flow_rule,
                "morning_start": config.morning_hours[0], "morning_end": config.morning_hours[1],
                "evening_start": config.evening_hours[0], "evening_end": config.evening_hours[1],
            })
        rows = con.execute("SELECT count(*) FROM subscriber_daily_location WHERE day = ?", [day]).fetchall()[0][0]
        operators = con.execute("SELECT count(*) FROM indicator_operator_days WHERE day = ?", [day]).fetchall()[0][0]
        # Rows of a per-subscriber table count people: masked like any count that leaves.
        result = {"days": 1, "drops": len(inputs), "operators": operators,
                  **mask_counts({"location_rows": rows}, settings.k_anonymity)}
        _audit(con, settings, "subscriber_daily_location.materialize", day, run_id, result)
    return result


# ------------------------------------------------------------------ unique subscribers
def compute_district_unique_subscribers(con: duckdb.DuckDBPyConnection, settings: Settings, day: date,
                                        run_id: str | None) -> dict[str, Any]:
    """Replace district_unique_subscribers (grain day and hour) and its published copy for ``day``."""
    k = settings.k_anonymity
    with transaction(con):
        con.execute(read_sql("indicators/district_unique_subscribers_delete"), {"day": day})
        con.execute(read_sql("indicators/district_unique_subscribers_published_delete"), {"day": day})
        inputs = _load_day(con, settings, day)
        if inputs:
            _ancestry(con)
            con.execute(read_sql("indicators/district_unique_subscribers"),
                        {"day": day, "run_id": run_id, "zone": _zone(settings)})
        source = pl.DataFrame(
            fetch_dicts(con, read_sql("indicators/district_unique_subscribers_published_input"), {"day": day}),
            schema={"grain": pl.String, "hour": pl.Int32, "level": pl.String, "district_code": pl.String,
                    "parent_code": pl.String, "value": pl.Int64})
        # One hierarchy per grain and hour (null hour: the whole day).
        source = source.with_columns(pl.col("hour").fill_null(-1).alias("slice_hour"))
        source = _with_known(con, "district_unique_subscribers_published", day, source,
                             _keys(source, ["grain", "slice_hour"]), _keys(source, ["level", "district_code"]))
        decided = suppress_slices(source, ["grain", "slice_hour"], k)
        published = _published_frame(decided, day, ["grain", "hour", "level", "district_code"])
        assert_k_anonymous(published["subscribers"].to_list(), k, "district_unique_subscribers_published")
        _insert(con, "district_unique_subscribers_published", published)
        _remember_shown(con, "district_unique_subscribers_published", day, decided)
        result = {"days": 1, "drops": len(inputs), "rows": source.height, "k": k, **_suppression_counts(decided)}
        _audit(con, settings, "district_unique_subscribers.materialize", day, run_id, result)
    return result


# ------------------------------------------------------------------ daily location counts
def compute_district_daily_location(con: duckdb.DuckDBPyConnection, settings: Settings, day: date,
                                    run_id: str | None) -> dict[str, Any]:
    """Replace district_daily_location (subscribers whose daily location, last or modal, is in the
    district) and its published copy for ``day``, from subscriber_daily_location."""
    k = settings.k_anonymity
    with transaction(con):
        con.execute(read_sql("indicators/district_daily_location_delete"), {"day": day})
        con.execute(read_sql("indicators/district_daily_location_published_delete"), {"day": day})
        _ancestry(con)
        con.execute(read_sql("indicators/district_daily_location"), {"day": day, "run_id": run_id})
        source = pl.DataFrame(
            fetch_dicts(con, read_sql("indicators/district_daily_location_published_input"), {"day": day}),
            schema={"rule": pl.String, "level": pl.String, "district_code": pl.String, "parent_code": pl.String,
                    "value": pl.Int64})
        source = _with_known(con, "district_daily_location_published", day, source,
                             _keys(source, ["rule"]), _keys(source, ["level", "district_code"]))
        decided = suppress_slices(source, ["rule"], k)
        published = _published_frame(decided, day, ["rule", "level", "district_code"])
        assert_k_anonymous(published["subscribers"].to_list(), k, "district_daily_location_published")
        _insert(con, "district_daily_location_published", published)
        _remember_shown(con, "district_daily_location_published", day, decided)
        result = {"days": 1, "rows": source.height, "k": k, **_suppression_counts(decided)}
        _audit(con, settings, "district_daily_location.materialize", day, run_id, result)
    return result


# ------------------------------------------------------------------ origin-destination flows
def flow_level(settings: Settings) -> str:
    """The boundary level whose flows are published: indicators.flow_level, else the finest."""
    levels = [level.level for level in settings.config.geography.levels]
    chosen = settings.config.indicators.flow_level or levels[0]
    if chosen not in levels:
        raise IndicatorsError(f"indicators.flow_level {chosen!r} is not one of geography.levels: {', '.join(levels)}")
    return chosen


def compute_district_od_flows(con: duckdb.DuckDBPyConnection, settings: Settings, day: date,
                              run_id: str | None) -> dict[str, Any]:
    """Replace district_od_flows (consecutive days: day-1 -> day; morning -> evening of day) and
    district_od_flows_published (flows of indicators.flow_level with their origin totals) for ``day``."""
    k = settings.k_anonymity
    rule = settings.config.indicators.flow_rule
    with transaction(con):
        con.execute(read_sql("indicators/district_od_flows_delete"), {"day": day})
        con.execute(read_sql("indicators/district_od_flows_published_delete"), {"day": day})
        _ancestry(con)
        con.execute(read_sql("indicators/district_od_flows"),
                    {"day": day, "previous_day": day - timedelta(days=1), "flow_rule": rule, "run_id": run_id})
        level = flow_level(settings)
        flows = fetch_dicts(con, read_sql("indicators/district_od_flows_published_input"), {"day": day, "level": level})
        stable = con.execute(
            "SELECT count(*) FROM indicator_operator_days AS p JOIN indicator_operator_days AS d USING (operator) "
            "WHERE p.day = ? AND d.day = ? AND len(p.key_ids) = 1 AND p.key_ids = d.key_ids",
            [day - timedelta(days=1), day]).fetchall()[0][0]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for flow in flows:
            groups.setdefault((flow["flow_kind"], flow["rule"]), []).append(flow)
        earlier = _shown_before(con, "district_od_flows_published", day)
        published_rows, shown_now = [], []
        for (kind, flow_rule), members in groups.items():
            table_slice = shown_key(kind, flow_rule, level)
            known = {(cell, value) for slice_key, cell, value in earlier if slice_key == table_slice}
            for cell in protect_flows(members, k, known):
                if cell["published_value"] is not None:
                    shown_now.append({"slice": table_slice,
                                      "cell": shown_key(cell["origin_code"], cell["destination_code"]),
                                      "published_value": cell["published_value"]})
                published_rows.append({
                    "day": day, "flow_kind": kind, "rule": flow_rule, "level": level,
                    "origin_code": cell["origin_code"], "destination_code": cell["destination_code"],
                    "total": cell["total"],
                    "subscribers": None if cell["published_value"] is None else int(cell["published_value"]),
                    "suppressed": cell["suppression"] is not None, "suppression": cell["suppression"],
                })
        published = pl.DataFrame(published_rows, schema={
            "day": pl.Date, "flow_kind": pl.String, "rule": pl.String, "level": pl.String, "origin_code": pl.String,
            "destination_code": pl.String, "total": pl.String, "subscribers": pl.Int64, "suppressed": pl.Boolean,
            "suppression": pl.String})
        assert_k_anonymous(published["subscribers"].to_list(), k, "district_od_flows_published")
        _insert(con, "district_od_flows_published", published)
        _remember_shown(con, "district_od_flows_published", day,
                        pl.DataFrame(shown_now, schema={"slice": pl.String, "cell": pl.String,
                                                        "published_value": pl.Float64}))
        kinds = published["suppression"].value_counts() if published.height else None
        by_kind = dict(zip(kinds["suppression"].to_list(), kinds["count"].to_list())) if kinds is not None else {}
        result = {"days": 1, "flow_rule": rule, "flow_level": level, "flow_rows": len(flows), "operators_with_stable_key": stable,
                  "k": k, "published": by_kind.get(None, 0), "primary": by_kind.get("primary", 0),
                  "complementary": by_kind.get("complementary", 0)}
        _audit(con, settings, "district_od_flows.materialize", day, run_id, result)
    return result


def compute_indicators(con: duckdb.DuckDBPyConnection, settings: Settings, day: date,
                       run_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Every indicator of local day ``day`` (density.local_timezone), in dependency order: the
    per-subscriber locations, unique subscribers, daily-location counts, then flows (which read
    the locations of ``day`` and of the day before, if still kept). Each step is its own
    transaction. Returns each step's summary counts."""
    return {
        "subscriber_daily_location": compute_subscriber_daily_location(con, settings, day, run_id),
        "district_unique_subscribers": compute_district_unique_subscribers(con, settings, day, run_id),
        "district_daily_location": compute_district_daily_location(con, settings, day, run_id),
        "district_od_flows": compute_district_od_flows(con, settings, day, run_id),
    }


# ------------------------------------------------------------------ helpers
def _published_frame(decided: pl.DataFrame, day: date, columns: list[str]) -> pl.DataFrame:
    return decided.select(
        pl.lit(day, dtype=pl.Date).alias("day"),
        *columns,
        pl.col("published_value").cast(pl.Int64).alias("subscribers"),
        pl.col("suppression").is_not_null().alias("suppressed"),
        "suppression",
    ) if decided.height else pl.DataFrame(schema={"day": pl.Date, **{c: pl.String for c in columns},
                                                  "subscribers": pl.Int64, "suppressed": pl.Boolean,
                                                  "suppression": pl.String})


def _keys(frame: pl.DataFrame, columns: list[str]) -> list[str]:
    """Each row's slice or cell key in indicators_shown (protect.shown_key of the columns)."""
    return [shown_key(*values) for values in frame.select(columns).iter_rows()]


def _shown_before(con: duckdb.DuckDBPyConnection, dataset: str, day: date) -> list[tuple[str, str, float]]:
    """(slice, cell, value) that earlier versions of ``dataset`` showed for ``day``."""
    return [(row["slice"], row["cell"], float(row["subscribers"])) for row in
            fetch_dicts(con, read_sql("indicators/indicators_shown_input"), {"dataset": dataset, "day": day})]


def _with_known(con: duckdb.DuckDBPyConnection, dataset: str, day: date, source: pl.DataFrame,
                slices: list[str], cells: list[str]) -> pl.DataFrame:
    """``source`` with its slice and cell keys and ``known``: the cell's value now is one that an
    earlier version of the publication showed (a rerun of the day), so hiding it protects nothing."""
    earlier = set(_shown_before(con, dataset, day))
    known = [(slice_key, cell, float(value)) in earlier
             for slice_key, cell, value in zip(slices, cells, source["value"].to_list())]
    return source.with_columns(pl.Series("slice", slices, dtype=pl.String), pl.Series("cell", cells, dtype=pl.String),
                               pl.Series("known", known, dtype=pl.Boolean))


def _remember_shown(con: duckdb.DuckDBPyConnection, dataset: str, day: date, decided: pl.DataFrame) -> None:
    """Record the values this version shows (``decided``: slice, cell, published_value), so a later
    version of the day treats them as known."""
    if decided.is_empty():
        return
    frame = decided.select("slice", "cell", pl.col("published_value").cast(pl.Int64).alias("subscribers")).filter(
        pl.col("subscribers").is_not_null())
    con.register("indicators_shown_frame", frame)
    try:
        con.execute(read_sql("indicators/indicators_shown"), {"dataset": dataset, "day": day})
    finally:
        con.unregister("indicators_shown_frame")


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    if frame.is_empty():
        return
    columns = ", ".join(f'"{column}"' for column in frame.columns)
    con.register("indicators_published_frame", frame)
    try:
        con.execute(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM indicators_published_frame')
    finally:
        con.unregister("indicators_published_frame")


def _suppression_counts(decided: pl.DataFrame) -> dict[str, int]:
    if decided.is_empty():
        return {"published": 0, "primary": 0, "complementary": 0}
    counts = decided["suppression"].value_counts()
    by_kind = dict(zip(counts["suppression"].to_list(), counts["count"].to_list()))
    return {"published": by_kind.get(None, 0), "primary": by_kind.get("primary", 0),
            "complementary": by_kind.get("complementary", 0)}


__all__ = ["DAILY_LOCATION_RULES", "FLOW_KINDS", "IndicatorsError", "compute_district_daily_location",
           "compute_district_od_flows", "compute_district_unique_subscribers", "compute_indicators",
           "compute_subscriber_daily_location", "flow_level", "local_days"]
