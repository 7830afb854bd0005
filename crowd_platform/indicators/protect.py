"""k-anonymity of the published indicators, through crowd_platform.publication.kanon.

District counts (unique subscribers, daily locations) are one district hierarchy per slice (a
day or an hour, a rule): ``kanon.suppress_hierarchy`` as for density.

Origin-destination flows are published at ONE district level (``indicators.flow_level``) with
their origin totals (row totals). Each flow is then in exactly one additive equation, its
origin's: total = sum of the flows out of the origin. :func:`protect_flows` gives kanon that
forest (origin total -> its flows): every flow <= k is hidden (primary), and an origin total
shown above exactly one hidden flow hides another flow of the row (or the total), so no hidden
flow is ever the total minus the shown ones; the rows share no cell, so nothing else pins a
hidden flow down. Destination totals (columns) or flows of several levels at once would tie
the rows together (a two-way table, a lattice of levels); kanon's per-group rules do not protect
those systems (a hidden cell can be determined by a combination of equations, found by the rank
test in crowd_platform_tests/indicators/test_flow_protection.py), so they are not published.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

import polars as pl

from crowd_platform.publication.kanon import publishable, suppress_hierarchy


class IndicatorsError(RuntimeError):
    """A one-line reason an indicators step cannot run or would publish a small count."""


def suppress_slices(rows: pl.DataFrame, slice_columns: list[str], k: int) -> pl.DataFrame:
    """``suppress_hierarchy`` on each slice (e.g. one rule, or one grain and hour) of district
    rows (level, district_code, parent_code, value). Returns the rows with published_value and
    suppression, slice by slice."""
    if rows.is_empty():
        return rows.with_columns(pl.lit(None, dtype=pl.Float64).alias("published_value"),
                                 pl.lit(None, dtype=pl.String).alias("suppression"))
    parts = [suppress_hierarchy(part, k) for _, part in rows.group_by(slice_columns, maintain_order=True)]
    return pl.concat(parts)


def shown_key(*parts: Any) -> str:
    """A slice or cell of indicators_shown: a JSON array, unambiguous whatever the codes hold."""
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


def protect_flows(flows: Iterable[dict[str, Any]], k: int,
                  shown: Collection[tuple[str, float]] = ()) -> list[dict[str, Any]]:
    """Primary and complementary suppression of one table of flows (one day, kind, rule and level).

    ``flows``: dicts with origin_code, destination_code and value (subscribers). ``shown``: what
    an earlier version of this table published, as (``shown_key(origin, destination)``, value)
    pairs, destination None for an origin total. A cell whose value now is one of them is known
    to whoever kept that version, so kanon neither counts on hiding it nor picks it as a
    complementary cell. Returns the flows and the origin totals as dicts with origin_code,
    destination_code (None for a total), total (None | 'origin'), value, published_value (None
    when suppressed) and suppression ('primary' | 'complementary' | None).
    """
    flows = list(flows)
    if not flows:
        return []
    totals: dict[str, float] = {}
    for flow in flows:
        totals[flow["origin_code"]] = totals.get(flow["origin_code"], 0.0) + float(flow["value"])
    # One forest: the origin total is the parent of the origin's flows. Codes are made unique
    # across the two kinds of cell (kanon finds a parent by code among the other "level").
    frame = pl.DataFrame(
        {
            "level": ["total"] * len(totals) + ["flow"] * len(flows),
            "district_code": [f"O|{origin}" for origin in totals]
                             + [f"F|{flow['origin_code']}|{flow['destination_code']}" for flow in flows],
            "parent_code": [None] * len(totals) + [f"O|{flow['origin_code']}" for flow in flows],
            "value": list(totals.values()) + [float(flow["value"]) for flow in flows],
            "known": [(shown_key(origin, None), value) in shown for origin, value in totals.items()]
                     + [(shown_key(flow["origin_code"], flow["destination_code"]), float(flow["value"])) in shown
                        for flow in flows],
        },
        schema={"level": pl.String, "district_code": pl.String, "parent_code": pl.String, "value": pl.Float64,
                "known": pl.Boolean},
    )
    decided = suppress_hierarchy(frame, k)
    kinds = decided["suppression"].to_list()
    result = []
    for (origin, value), kind in zip(totals.items(), kinds[: len(totals)]):
        result.append({"origin_code": origin, "destination_code": None, "total": "origin", "value": value,
                       "published_value": None if kind is not None else value, "suppression": kind})
    for flow, kind in zip(flows, kinds[len(totals):]):
        value = float(flow["value"])
        result.append({"origin_code": flow["origin_code"], "destination_code": flow["destination_code"], "total": None,
                       "value": value, "published_value": None if kind is not None else value, "suppression": kind})
    return result


def assert_k_anonymous(published: Iterable[Any], k: int, what: str) -> None:
    """Write-audit-publish: refuse to write a table that would show a count at or below k."""
    leaked = sum(1 for value in published if value is not None and not publishable(value, k))
    if leaked:
        raise IndicatorsError(f"{what}: k-anonymity violated for {leaked} rows; nothing published")
