"""A day's indicators published twice: late drops make the platform rerun the day, and whoever kept
the first version reads the second beside it.

Every count the first version showed and the second still has is known to that reader. Hiding
such a cell protects nothing, so the second version must not pick it as a complementary cell
(indicators_shown, kanon ``known``). Real DuckDB file and Parquet lake (conftest.py); the area is
K1 > KC1 > (L1, L2); K1 > KC2 > (L3), sites S1 (c1) -> L1, S2 (c2) -> L2, S3 (c3) -> L3.
"""

from __future__ import annotations

import polars as pl

from crowd_platform.indicators.compute import compute_indicators
from crowd_platform.indicators.protect import protect_flows, shown_key
from crowd_platform_tests.indicators.area import DAY, wib
from crowd_platform_tests.support.attacker import recoverable_cells

TABLES = {
    # table -> the columns naming one hierarchy (one additive system of equations)
    "district_daily_location_published": ["rule"],
    "district_unique_subscribers_published": ["grain", "hour"],
}


def _publication(con, table: str, slice_columns: list[str]) -> dict[tuple, dict[tuple[str, str], int | None]]:
    columns = ", ".join(slice_columns)
    rows = con.execute(f"SELECT {columns}, level, district_code, subscribers FROM {table} WHERE day = ?", [DAY]).fetchall()
    tables: dict[tuple, dict[tuple[str, str], int | None]] = {}
    for row in rows:
        *slice_values, level, code, subscribers = row
        tables.setdefault(tuple(slice_values), {})[(level, code)] = subscribers
    return tables


def _truth(con, table: str) -> dict[tuple, dict[tuple[str, str], int]]:
    """The internal values behind a published table (rounded as the publication decides on them)."""
    if table == "district_daily_location_published":
        rows = con.execute("SELECT rule, level, district_code, subscribers FROM district_daily_location WHERE day = ?",
                           [DAY]).fetchall()
    else:
        rows = con.execute("SELECT grain, hour, level, district_code, CAST(round(subscribers) AS BIGINT) "
                           "FROM district_unique_subscribers WHERE day = ?", [DAY]).fetchall()
    truth: dict[tuple, dict[tuple[str, str], int]] = {}
    for row in rows:
        *slice_values, level, code, value = row
        truth.setdefault(tuple(slice_values), {})[(level, code)] = value
    return truth


def _parents(con) -> dict[tuple[str, str], tuple[str, str] | None]:
    rows = con.execute("SELECT level, district_code, parent_code FROM districts").fetchall()
    level_of = {code: level for level, code, _ in rows}
    return {(level, code): ((level_of[parent], parent) if parent else None) for level, code, parent in rows}


def _recovered_with_first_version(con, first: dict[str, dict]) -> list[str]:
    """Hidden cells of the current version that the additive equations pin down once the first
    version's values, where unchanged, are known."""
    parents = _parents(con)
    found = []
    for table, slice_columns in TABLES.items():
        now, truth = _publication(con, table, slice_columns), _truth(con, table)
        for slice_values, cells in now.items():
            before = first[table].get(slice_values, {})
            known = {cell: (value if value is not None else
                            (truth[slice_values][cell] if before.get(cell) == truth[slice_values][cell] else None))
                     for cell, value in cells.items()}
            found += [f"{table} {slice_values} {cell}" for cell in recoverable_cells(parents, known)]
    return found


def _late_day(settings, lake):
    """v1: k+5 subscribers last seen at each of L1, L2, L3 (everything shown). Late drops then move
    k+2 of L2's to L3 at 20:00: L2 = 3 (hidden), L1 unchanged (known from v1), KC1 changed.
    Hiding L1 as KC1's complementary cell would give L2 = KC1 - L1 to whoever kept v1."""
    k = settings.k_anonymity
    first = [(f"A{i}", "c1", wib(DAY, 10)) for i in range(k + 5)] + [(f"B{i}", "c2", wib(DAY, 10)) for i in range(k + 5)]
    first += [(f"C{i}", "c3", wib(DAY, 10)) for i in range(k + 5)]
    late = [(f"B{i}", "c3", wib(DAY, 20)) for i in range(k + 2)]
    return first, late


def test_a_rerun_after_late_drops_never_hides_a_value_the_first_version_showed(area):
    _, settings, con, lake = area
    k = settings.k_anonymity
    first, late = _late_day(settings, lake)
    lake.add("telkomsel", first)
    compute_indicators(con, settings, DAY, "v1")
    v1 = {table: _publication(con, table, columns) for table, columns in TABLES.items()}
    assert all(value is not None for value in v1["district_daily_location_published"][("last",)].values())

    lake.add("telkomsel", late)
    compute_indicators(con, settings, DAY, "v2")
    last = {code: n for (_, code), n in _publication(con, "district_daily_location_published", ["rule"])[("last",)].items()}
    assert last["L2"] is None                      # 3: primary
    assert last["L1"] == k + 5                     # shown in v1 with this value: hiding it protects nothing
    assert last["KC1"] is None                     # so the total is hidden instead
    assert _recovered_with_first_version(con, v1) == []
    # The memory holds only shown values, each once, all above k.
    memory = con.execute("SELECT dataset, slice, cell, subscribers, count(*) FROM indicators_shown "
                         "GROUP BY ALL HAVING count(*) > 1 OR subscribers <= ?", [k]).fetchall()
    assert memory == []


def test_without_the_memory_the_same_rerun_leaks(area):
    """The attack above is real: forget what v1 showed and the rerun hides L1, which v1 showed."""
    _, settings, con, lake = area
    first, late = _late_day(settings, lake)
    lake.add("telkomsel", first)
    compute_indicators(con, settings, DAY, "v1")
    v1 = {table: _publication(con, table, columns) for table, columns in TABLES.items()}
    lake.add("telkomsel", late)
    con.execute("DELETE FROM indicators_shown")
    compute_indicators(con, settings, DAY, "v2")
    recovered = _recovered_with_first_version(con, v1)
    assert any("('last',)" in cell and "L2" in cell for cell in recovered), recovered


def test_a_rerun_with_nothing_new_publishes_the_same_and_remembers_nothing_twice(area):
    _, settings, con, lake = area
    first, _ = _late_day(settings, lake)
    lake.add("telkomsel", first + [(f"Z{i}", "c3", wib(DAY, 12)) for i in range(3)])
    compute_indicators(con, settings, DAY, "v1")
    tables = ("district_unique_subscribers_published", "district_daily_location_published", "district_od_flows_published")
    before = {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    remembered = con.execute("SELECT count(*) FROM indicators_shown").fetchall()[0][0]
    assert remembered > 0
    compute_indicators(con, settings, DAY, "v1-again")
    assert {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables} == before
    assert con.execute("SELECT count(*) FROM indicators_shown").fetchall()[0][0] == remembered


def test_flows_treat_a_value_of_an_earlier_version_as_known():
    """One origin O with flows to a (40), b (35), c (25), all shown in v1. v2: c is 10. Naively b, the
    next smallest, would be hidden with c, but v1 showed b = 35 and a = 40: the origin total goes."""
    k = 15
    v1 = [{"origin_code": "O", "destination_code": d, "value": n} for d, n in (("a", 40), ("b", 35), ("c", 25))]
    assert all(cell["suppression"] is None for cell in protect_flows(v1, k))
    v2 = [dict(flow, value=10) if flow["destination_code"] == "c" else flow for flow in v1]
    naive = {cell["destination_code"]: cell["suppression"] for cell in protect_flows(v2, k)}
    assert naive == {None: None, "a": None, "b": "complementary", "c": "primary"}
    shown = {(shown_key(cell["origin_code"], cell["destination_code"]), cell["published_value"])
             for cell in protect_flows(v1, k)}
    aware = {cell["destination_code"]: cell["suppression"] for cell in protect_flows(v2, k, shown)}
    assert aware == {None: "complementary", "a": None, "b": None, "c": "primary"}


def test_shown_keys_are_unambiguous_whatever_the_codes_hold():
    assert shown_key("a|b", "c") != shown_key("a", "b|c")
    assert shown_key("O", None) != shown_key("O", "")
    assert pl.Series([shown_key("kelurahan", "3171")]).str.json_decode().to_list() == [["kelurahan", "3171"]]
