"""k-anonymity with complementary suppression (crowd_platform.publication.kanon), property-based."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowd_platform.publication.kanon import mask_counts, publishable, suppress_hierarchy

LEVELS = ("kelurahan", "kecamatan", "kabkota", "provinsi")


@st.composite
def hierarchies(draw):
    """A random additive hierarchy: leaves get values, parents are the sum of their children."""
    depth = draw(st.integers(min_value=1, max_value=4))
    k = draw(st.sampled_from([1, 5, 15]))
    # Build top-down: number of children per node at each level.
    nodes = [(LEVELS[depth - 1], f"{depth - 1}-{i}", None) for i in range(draw(st.integers(1, 3)))]
    frontier = [code for _, code, _ in nodes]
    for rank in range(depth - 2, -1, -1):
        next_frontier = []
        for parent in frontier:
            for i in range(draw(st.integers(1, 4))):
                code = f"{parent}.{i}"
                nodes.append((LEVELS[rank], code, parent))
                next_frontier.append(code)
        frontier = next_frontier
    leaf_values = {code: draw(st.integers(0, 3 * k + 5)) for code in frontier}
    values: dict[str, int] = {}

    def total(code: str) -> int:
        if code in leaf_values:
            return leaf_values[code]
        if code not in values:
            values[code] = sum(total(child) for _, child, parent in nodes if parent == code)
        return values[code]

    rows = [
        {"level": level, "district_code": code, "parent_code": parent, "value": float(total(code))}
        for level, code, parent in nodes
    ]
    return pl.DataFrame(rows, schema={"level": pl.String, "district_code": pl.String, "parent_code": pl.String, "value": pl.Float64}), k


def _groups(frame: pl.DataFrame) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in frame.iter_rows(named=True):
        if row["parent_code"] is not None:
            groups.setdefault(row["parent_code"], []).append(row)
    return groups


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hierarchies())
def test_no_published_value_at_or_below_k_and_published_values_are_true(case):
    rows, k = case
    out = suppress_hierarchy(rows, k)
    for row in out.iter_rows(named=True):
        if row["published_value"] is not None:
            assert row["published_value"] > k
            assert row["published_value"] == row["value"]
            assert row["suppression"] is None
        else:
            assert row["suppression"] in ("primary", "complementary")
        if row["value"] <= k:
            assert row["suppression"] == "primary"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hierarchies())
def test_no_suppressed_value_recoverable_by_subtraction(case):
    rows, k = case
    out = suppress_hierarchy(rows, k)
    by_code = {row["district_code"]: row for row in out.iter_rows(named=True)}
    for parent_code, children in _groups(out).items():
        hidden = [child for child in children if child["published_value"] is None]
        parent_hidden = by_code[parent_code]["published_value"] is None
        if hidden:
            # parent - sum(published siblings) must not isolate one hidden child
            assert len(hidden) >= 2 or parent_hidden
        if parent_hidden:
            # a hidden parent must not equal the sum of fully published children
            assert hidden


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hierarchies())
def test_no_suppressed_value_determined_by_the_additive_equations(case):
    """Stronger audit: solve the whole linear system parent = sum(children) for hidden cells."""
    rows, k = case
    out = suppress_hierarchy(rows, k)
    hidden_codes = [row["district_code"] for row in out.iter_rows(named=True) if row["published_value"] is None]
    if not hidden_codes:
        return
    index = {code: i for i, code in enumerate(hidden_codes)}
    equations = []
    for parent_code, children in _groups(out).items():
        coefficients = np.zeros(len(hidden_codes))
        if parent_code in index:
            coefficients[index[parent_code]] = 1.0
        for child in children:
            if child["district_code"] in index:
                coefficients[index[child["district_code"]]] -= 1.0
        if coefficients.any():
            equations.append(coefficients)
    if not equations:
        return
    matrix = np.array(equations)
    rank = np.linalg.matrix_rank(matrix)
    for code, i in index.items():
        unit = np.zeros(len(hidden_codes))
        unit[i] = 1.0
        # A hidden cell is determined iff its unit vector lies in the row space of the system.
        assert np.linalg.matrix_rank(np.vstack([matrix, unit])) > rank, f"{code} recoverable"


def test_hand_made_example_hides_the_next_smallest_sibling():
    rows = pl.DataFrame(
        {
            "level": ["kecamatan", "kelurahan", "kelurahan", "kelurahan"],
            "district_code": ["K", "a", "b", "c"],
            "parent_code": [None, "K", "K", "K"],
            "value": [100.0, 10.0, 40.0, 50.0],
        }
    )
    out = suppress_hierarchy(rows, 15)
    kinds = dict(zip(out["district_code"], out["suppression"]))
    assert kinds == {"K": None, "a": "primary", "b": "complementary", "c": None}
    assert out.filter(pl.col("district_code") == "c")["published_value"].item() == 50.0


def test_publishable_and_mask_counts():
    assert publishable(16, 15) and not publishable(15, 15) and not publishable(None, 15)
    assert not publishable(float("nan"), 15)
    masked = mask_counts({"telkomsel": 100, "xl": 3, "indosat": 40, "tri": 60}, 15)
    assert masked == {"telkomsel": 100, "xl": None, "indosat": None, "tri": 60}
    assert mask_counts({"a": 100, "b": 50}, 15) == {"a": 100, "b": 50}


def _versions(rows: pl.DataFrame, changes: dict[str, int]) -> pl.DataFrame:
    """A second version of ``rows``: some leaves changed (a superseding delivery), parents re-added."""
    parent_of = dict(zip(rows["district_code"], rows["parent_code"]))
    leaves = set(rows["district_code"]) - {code for code in parent_of.values() if code}
    values = {code: float(value) for code, value in zip(rows["district_code"], rows["value"])}
    for code, value in changes.items():
        if code in leaves:
            delta, cursor = value - values[code], code
            while cursor is not None:
                values[cursor] += delta
                cursor = parent_of[cursor]
    return rows.with_columns(pl.Series("value", [values[code] for code in rows["district_code"]]))


@st.composite
def two_versions(draw):
    rows, k = draw(hierarchies())
    codes = rows["district_code"].to_list()
    changes = draw(st.dictionaries(st.sampled_from(codes), st.integers(0, 3 * k + 5), max_size=3))
    return rows, _versions(rows, changes), k


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(two_versions())
def test_no_hidden_cell_recoverable_with_an_earlier_version_in_hand(case):
    """An attacker kept the first version of a window and reads the second (after a superseding
    delivery): every value the first showed that is unchanged is known to them. No hidden cell
    of the second version may be pinned down by the equations over both."""
    from crowd_platform_tests.support.attacker import recoverable_cells

    first, second, k = case
    shown_before = {row["district_code"]: row["published_value"] for row in suppress_hierarchy(first, k).iter_rows(named=True)}
    second = second.with_columns(pl.Series("known", [shown_before[code] is not None and shown_before[code] == value
                                                     for code, value in zip(second["district_code"], second["value"])]))
    out = suppress_hierarchy(second, k)
    level_of = dict(zip(out["district_code"], out["level"]))
    parents = {(row["level"], row["district_code"]): ((level_of[row["parent_code"]], row["parent_code"]) if row["parent_code"] else None)
               for row in out.iter_rows(named=True)}
    known_to_attacker = {(row["level"], row["district_code"]): (row["published_value"] if row["published_value"] is not None
                                                                  else (row["value"] if row["known"] else None))
                         for row in out.iter_rows(named=True)}
    assert recoverable_cells(parents, known_to_attacker) == []


def test_a_value_seen_in_an_earlier_version_is_not_the_complementary_cell():
    """v1 shows K=100, a=40, b=35, c=25. v2 (c redelivered as 10): hiding b, the next smallest, would
    protect nothing, since b's 35 is already known; a is known too, so the total K is hidden instead."""
    first = pl.DataFrame({"level": ["kecamatan", "kelurahan", "kelurahan", "kelurahan"],
                          "district_code": ["K", "a", "b", "c"], "parent_code": [None, "K", "K", "K"],
                          "value": [100.0, 40.0, 35.0, 25.0]})
    assert suppress_hierarchy(first, 15)["suppression"].to_list() == [None, None, None, None]
    second = _versions(first, {"c": 10})
    naive = dict(zip(second["district_code"], suppress_hierarchy(second, 15)["suppression"]))
    assert naive == {"K": None, "a": None, "b": "complementary", "c": "primary"}  # c = 85 - 40 - 35 with v1 in hand
    aware = second.with_columns(pl.Series("known", [False, True, True, False]))
    kinds = dict(zip(aware["district_code"], suppress_hierarchy(aware, 15)["suppression"]))
    assert kinds == {"K": "complementary", "a": None, "b": None, "c": "primary"}
