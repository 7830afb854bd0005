"""Origin-destination flows: primary suppression of every flow <= k, and complementary
suppression so that no published origin total gives a hidden flow back (protect.protect_flows),
checked against the whole linear system of the published table (rank test)."""

from __future__ import annotations

import random

import numpy as np

from crowd_platform.indicators.protect import protect_flows

K = 5


def table(values: dict[tuple[str, str], int]) -> list[dict]:
    return [{"origin_code": o, "destination_code": d, "value": v} for (o, d), v in values.items()]


def key(cell: dict) -> tuple:
    return (cell["origin_code"], cell["destination_code"])


def determined_hidden_cells(cells: list[dict]) -> list[tuple]:
    """Hidden cells that the published equations (origin total = sum of its flows) pin down: a
    unit vector in the row space of the equations restricted to the hidden cells."""
    hidden = [key(cell) for cell in cells if cell["published_value"] is None]
    index = {cell: position for position, cell in enumerate(hidden)}
    rows = []
    for total in (cell for cell in cells if cell["total"] == "origin"):
        row = np.zeros(len(hidden))
        if key(total) in index:
            row[index[key(total)]] = -1.0
        for flow in cells:
            if flow["total"] is None and flow["origin_code"] == total["origin_code"] and key(flow) in index:
                row[index[key(flow)]] = 1.0
        if row.any():
            rows.append(row)
    if not rows:
        return []
    system = np.array(rows)
    rank = np.linalg.matrix_rank(system)
    determined = []
    for cell, position in index.items():
        unit = np.zeros(len(hidden))
        unit[position] = 1.0
        if np.linalg.matrix_rank(np.vstack([system, unit])) == rank:
            determined.append(cell)
    return determined


def test_a_small_flow_hides_a_second_flow_of_its_origin():
    # From a1: 30 to a1, 20 to a2, 3 to b1 (primary). The origin total 53 is shown, so 53 - 30 - 20
    # would give the 3 back: the smallest shown flow of the row (a1 -> a2) is hidden too.
    cells = protect_flows(table({("a1", "a1"): 30, ("a1", "a2"): 20, ("a1", "b1"): 3,
                                 ("a2", "a2"): 40, ("a2", "b1"): 25}), K)
    by_key = {key(cell): cell for cell in cells}
    assert by_key[("a1", "b1")]["suppression"] == "primary"
    assert by_key[("a1", "a2")]["suppression"] == "complementary"
    assert by_key[("a1", None)]["published_value"] == 53
    assert by_key[("a1", "a1")]["published_value"] == 30
    assert all(by_key[(o, d)]["suppression"] is None for o, d in [("a2", "a2"), ("a2", "b1"), ("a2", None)])
    assert determined_hidden_cells(cells) == []


def test_an_origin_with_one_flow_hides_its_total_with_it():
    cells = protect_flows(table({("a1", "b1"): 4, ("a2", "b1"): 30}), K)
    by_key = {key(cell): cell for cell in cells}
    assert by_key[("a1", None)]["published_value"] is None
    assert by_key[("a2", None)]["published_value"] == 30


def test_no_hidden_flow_is_determined_and_nothing_shown_is_small():
    rng = random.Random(16)
    codes = [f"d{i}" for i in range(5)]
    for _ in range(300):
        values = {(o, d): rng.choice([1, 2, 3, 6, 9, 14, 30]) for o in codes for d in codes if rng.random() < 0.6}
        if not values:
            continue
        cells = protect_flows(table(values), K)
        assert all(cell["published_value"] is None or cell["published_value"] > K for cell in cells)
        assert all(cell["published_value"] in (None, cell["value"]) for cell in cells)  # shown values are true
        assert determined_hidden_cells(cells) == [], values
