"""k-anonymity for everything that leaves the platform (docs/design.md section 4.3).

A count is shown only if it is above k. Hiding the small counts (primary suppression) is not
enough when totals are published too: a hidden child equals its published parent minus its
published siblings. Complementary suppression hides more cells until no hidden cell can be
recovered by subtraction, across every level of the district hierarchy:

- a published parent with exactly one hidden child: hide the smallest published sibling too;
- a parent with a single child: the child equals the parent, so both are hidden or neither;
- a hidden parent whose children are all published equals their sum: hide its smallest child.

The rules are applied until nothing changes (hiding a cell can break a rule one level up or
down). Each hidden cell then shares every additive equation it appears in with at least one
other hidden cell, so the equations do not pin it down.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import polars as pl

PRIMARY = "primary"
COMPLEMENTARY = "complementary"


def publishable(value: Any, k: int) -> bool:
    """True when a count may be shown on its own: a real number strictly above k."""
    if value is None:
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return not math.isnan(number) and number > k


def _suppress(
    keys: list[tuple[str, str]],
    parents: dict[tuple[str, str], tuple[str, str] | None],
    values: dict[tuple[str, str], float],
    k: int,
    known: frozenset[tuple[str, str]] = frozenset(),
) -> dict[tuple[str, str], str | None]:
    """Core algorithm on (level, code) keys; returns key -> suppression kind or None.

    ``known``: cells whose current value an earlier version of this publication already showed
    (a superseded delivery). Hiding one protects nothing, so for the rules a known cell counts as
    shown, and it is never chosen as a complementary cell: another one is."""
    status: dict[tuple[str, str], str | None] = {
        key: (None if publishable(values[key], k) else PRIMARY) for key in keys
    }
    children: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for key in keys:
        parent = parents[key]
        if parent is not None and parent in status:
            children[parent].append(key)

    def protected(key: tuple[str, str]) -> bool:
        """Hidden, and not known from an earlier version."""
        return status[key] is not None and key not in known

    def smallest_hideable(candidates: list[tuple[str, str]]) -> tuple[str, str] | None:
        shown = [key for key in candidates if status[key] is None and key not in known]
        # Deterministic choice: smallest value, then code, so reruns hide the same cells.
        return min(shown, key=lambda key: (values[key], key)) if shown else None

    def hide(key: tuple[str, str] | None) -> bool:
        if key is None or status[key] is not None or key in known:
            return False
        status[key] = COMPLEMENTARY
        return True

    changed = True
    while changed:
        changed = False
        for parent, group in children.items():
            hidden = [key for key in group if protected(key)]
            if len(group) == 1:
                # The only child equals its parent: hide both or neither.
                child = group[0]
                if protected(child) and not protected(parent):
                    changed |= hide(parent)
                elif protected(parent) and not protected(child):
                    changed |= hide(child)
                continue
            if not protected(parent) and len(hidden) == 1:
                # One hidden child under a visible total: hide a sibling, or else the total.
                changed |= hide(smallest_hideable(group)) or hide(parent)
            elif protected(parent) and not hidden:
                changed |= hide(smallest_hideable(group))
    return status


def suppress_hierarchy(rows: pl.DataFrame, k: int) -> pl.DataFrame:
    """Apply primary and complementary suppression to one hierarchy (e.g. one window).

    ``rows`` has columns level, district_code, parent_code (null at the top) and value (the
    count that decides; must be additive: a parent equals the sum of its children). A row's
    parent is found by code among the rows of any level. Returns ``rows`` with
    ``published_value`` (null when suppressed) and ``suppression`` ('primary' |
    'complementary' | null) added, in the input order. An optional boolean column ``known``
    marks cells an earlier version of the same publication showed with the value they have now
    (see :func:`_suppress`).
    """
    required = {"level", "district_code", "parent_code", "value"}
    missing = required - set(rows.columns)
    if missing:
        raise ValueError(f"suppress_hierarchy: missing columns {sorted(missing)}")
    if rows.is_empty():
        return rows.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("published_value"),
            pl.lit(None, dtype=pl.String).alias("suppression"),
        )
    levels = rows["level"].cast(pl.String).to_list()
    codes = rows["district_code"].cast(pl.String).to_list()
    parent_codes = rows["parent_code"].cast(pl.String).to_list()
    raw_values = rows["value"].cast(pl.Float64).to_list()

    keys = list(zip(levels, codes))
    if len(set(keys)) != len(keys):
        raise ValueError("suppress_hierarchy: duplicate (level, district_code) rows; pass one hierarchy at a time")
    # Parent codes are looked up among other levels' codes (codes are unique per level).
    by_code: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in keys:
        by_code[key[1]].append(key)
    parents: dict[tuple[str, str], tuple[str, str] | None] = {}
    for key, parent_code in zip(keys, parent_codes):
        candidates = [candidate for candidate in by_code.get(parent_code or "", []) if candidate[0] != key[0]]
        parents[key] = candidates[0] if candidates else None
    values = {key: (math.nan if value is None else value) for key, value in zip(keys, raw_values)}
    known = frozenset(key for key, flag in zip(keys, rows["known"].to_list()) if flag) if "known" in rows.columns else frozenset()
    status = _suppress(keys, parents, values, k, known)
    suppression = [status[key] for key in keys]
    published = [None if kind is not None else value for kind, value in zip(suppression, raw_values)]
    return rows.with_columns(
        pl.Series("published_value", published, dtype=pl.Float64),
        pl.Series("suppression", suppression, dtype=pl.String),
    )


def mask_counts(mapping: Mapping[str, Any], k: int) -> dict[str, Any]:
    """Mask a flat set of counts for reports and Dagster metadata (None = suppressed).

    The total of a flat set is often shown elsewhere (a row count, a file size), so one
    hidden count among published ones is treated as recoverable and the next smallest is
    hidden too.
    """
    masked: dict[str, Any] = {key: (value if publishable(value, k) else None) for key, value in mapping.items()}
    hidden = [key for key, value in masked.items() if value is None]
    if len(hidden) == 1:
        shown = [key for key, value in masked.items() if value is not None]
        if shown:
            smallest = min(shown, key=lambda key: (float(mapping[key]), key))
            masked[smallest] = None
    return masked
