"""bts_presence, district_density (+ published) and district_presence_daily on hand-made data.

Real DuckDB file, real Parquet, real Dagster: a tiny Jakarta-like hierarchy whose answers are
worked out by hand in the comments.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from crowd_platform.density.assets import bts_presence, district_density, district_presence_daily
from crowd_platform.density.districts import compute_district_density
from crowd_platform.density.presence import compute_bts_presence, compute_district_presence_daily, market_shares
from crowd_platform.density.checks import DENSITY_CHECKS
from crowd_platform.common.calendar import local_day_bounds
from crowd_platform.common.contracts import operator_contracts
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect

WINDOW = datetime(2020, 3, 10, 1, 0, tzinfo=timezone.utc)
WINDOW_KEY = "2020-03-10-01:00"
MOVE_TIME = WINDOW + timedelta(minutes=6)  # cell c4 moves from site S1 to S2


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def at(minute: int) -> datetime:
    return WINDOW + timedelta(minutes=minute)


# Telkomsel events. Subscribers A..F; c1, c2 on S1; c3 on S2; c4 on S1 before MOVE_TIME, S2 after.
TELKOMSEL_EVENTS = [
    ("A", "c1", 1), ("A", "c1", 3), ("A", "c3", 10),               # last c3/S2, modal S1 (c1)
    ("B", "c3", 2),                                                 # S2 everywhere
    ("C", "c1", 1), ("C", "c2", 3), ("C", "c3", 8), ("C", "c3", 9),  # tie 2-2: latest wins -> S2
    ("D", "c2", 4), ("D", "c3", 2),                                 # last c2/S1; tie 1-1 -> S1 (c2)
    ("E", "c4", 5),                                                 # c4 before the move -> S1
    ("F", "c4", 7),                                                 # c4 after the move -> S2
    ("G", "unknown-cell", 5),                                       # not in the registry: ignored
]
EXPECTED = {
    "any": {("cell", "c1"): 2, ("cell", "c2"): 2, ("cell", "c3"): 4, ("cell", "c4"): 2,
            ("site", "S1"): 4, ("site", "S2"): 5},
    "last": {("cell", "c3"): 3, ("cell", "c2"): 1, ("cell", "c4"): 2, ("site", "S1"): 2, ("site", "S2"): 4},
    "modal": {("cell", "c1"): 1, ("cell", "c2"): 1, ("cell", "c3"): 2, ("cell", "c4"): 2,
              ("site", "S1"): 3, ("site", "S2"): 3},
}
# Indosat: three subscribers on site IS1 (only 'all'-scope weights exist for it).
INDOSAT_EVENTS = [("X", "i1", 1), ("Y", "i1", 2), ("Z", "i1", 3)]


def write_events(home: Path, operator: str, window: datetime, rows: list[tuple[str, str, int]], drop_id: str,
                 minute_base: datetime | None = None) -> str:
    base = minute_base or window
    frame = pl.DataFrame(
        {
            "subscriber_key": [key(f"{operator}-{who}") for who, _, _ in rows],
            "cell_id": [cell for _, cell, _ in rows],
            "event_time": [base + timedelta(minutes=minute) for _, _, minute in rows],
            "event_type": ["data"] * len(rows),
        },
        schema={"subscriber_key": pl.String, "cell_id": pl.String, "event_time": pl.Datetime("us", "UTC"),
                "event_type": pl.String},
    )
    relative = f"lake/events/date={window:%Y-%m-%d}/window={window:%H%M}/operator={operator}/{drop_id}.parquet"
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return relative


def add_drop(con, drop_id: str, operator: str, window: datetime, lake_path: str, status: str = "accepted") -> None:
    con.execute(
        "INSERT INTO drops (drop_id, operator, feed, window_start, window_end, status, lake_path, contract_version) "
        "VALUES (?, ?, 'events', ?, ?, ?, ?, '1.0.0')",
        [drop_id, operator, window, window + timedelta(minutes=15), status, lake_path],
    )


def build_geography(con) -> None:
    epoch = datetime(2020, 1, 1, tzinfo=timezone.utc)
    registry = [
        ("c1", "telkomsel", "S1", epoch, None), ("c2", "telkomsel", "S1", epoch, None),
        ("c3", "telkomsel", "S2", epoch, None),
        ("c4", "telkomsel", "S1", epoch, MOVE_TIME), ("c4", "telkomsel", "S2", MOVE_TIME, None),
        ("i1", "indosat", "IS1", epoch, None),
    ]
    for cell, operator, site, valid_from, valid_to in registry:
        con.execute("INSERT INTO bts_registry (cell_id, operator, site_id, lon, lat, valid_from, valid_to) "
                    "VALUES (?, ?, ?, 106.8, -6.2, ?, ?)", [cell, operator, site, valid_from, valid_to])
    # K1 > KC1 > (L1, L2); K1 > KC2 > (L3, W1 water). Land: L1 2, L2 3, L3 5 (W1 4 km2 of water).
    districts = [
        ("K1", "kabkota", 2, None, True, 14.0), ("KC1", "kecamatan", 1, "K1", True, 5.0),
        ("KC2", "kecamatan", 1, "K1", True, 9.0), ("L1", "kelurahan", 0, "KC1", True, 2.0),
        ("L2", "kelurahan", 0, "KC1", True, 3.0), ("L3", "kelurahan", 0, "KC2", True, 5.0),
        ("W1", "kelurahan", 0, "KC2", False, 4.0),
    ]
    for code, level, rank, parent, admin, area in districts:
        con.execute("INSERT INTO districts (district_code, level, level_rank, parent_code, is_admin_unit, area_km2) "
                    "VALUES (?, ?, ?, ?, ?, ?)", [code, level, rank, parent, admin, area])
    weights = [
        ("S1", "telkomsel", "L1", 0.5), ("S1", "telkomsel", "L2", 0.5), ("S2", "telkomsel", "L3", 1.0),
        ("S1", "all", "L1", 1.0),   # ignored for telkomsel: its own scope exists
        ("IS1", "all", "L2", 1.0),  # indosat has no own scope: falls back to 'all'
    ]
    for site, scope, code, weight in weights:
        con.execute("INSERT INTO bts_district_weights VALUES (?, ?, ?, ?, 'test')", [site, scope, code, weight])


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    settings = get_settings(tmp_path)
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        build_geography(con)
        add_drop(con, "tsel-1", "telkomsel", WINDOW, write_events(tmp_path, "telkomsel", WINDOW, TELKOMSEL_EVENTS, "tsel-1"))
        add_drop(con, "isat-1", "indosat", WINDOW, write_events(tmp_path, "indosat", WINDOW, INDOSAT_EVENTS, "isat-1"))
        # A superseded drop of the same window must never be read.
        add_drop(con, "tsel-0", "telkomsel", WINDOW,
                 write_events(tmp_path, "telkomsel", WINDOW, [("Q", "c1", 1)] * 3, "tsel-0"), status="superseded")
    return tmp_path


def presence(con, operator: str = "telkomsel") -> dict[tuple[str, str], int]:
    rows = con.execute("SELECT place_level, place_id, subscribers FROM bts_presence WHERE operator = ?", [operator]).fetchall()
    return {(level, place): count for level, place, count in rows}


@pytest.mark.parametrize("rule", ["any", "last", "modal"])
def test_location_rules_on_hand_made_example(home: Path, rule: str):
    settings = get_settings(home)
    with connect(settings.warehouse_path) as con:
        result = compute_bts_presence(con, settings, WINDOW, WINDOW + timedelta(minutes=15), "run-1", rule=rule)
        assert result["drops"] == 2 and result["location_rule"] == rule
        assert presence(con) == EXPECTED[rule]
        assert presence(con, "indosat") == {("cell", "i1"): 3, ("site", "IS1"): 3}
        assert con.execute("SELECT DISTINCT location_rule FROM bts_presence").fetchall() == [(rule,)]


@pytest.mark.parametrize("rule,expected", [
    # H: two events in the same microsecond on c1 (S1) and c3 (S2); J: the reverse order in the file.
    ("last", {("cell", "c3"): 2, ("site", "S2"): 2}),
    ("modal", {("cell", "c3"): 2, ("site", "S2"): 2}),
    ("any", {("cell", "c1"): 2, ("cell", "c3"): 2, ("site", "S1"): 2, ("site", "S2"): 2}),
])
def test_ties_on_event_time_go_to_the_larger_cell_and_site(tmp_path: Path, rule: str, expected: dict):
    settings = get_settings(tmp_path)
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        build_geography(con)
        rows = [("H", "c1", 5), ("H", "c3", 5), ("J", "c3", 5), ("J", "c1", 5)]
        add_drop(con, "tsel-tie", "telkomsel", WINDOW, write_events(tmp_path, "telkomsel", WINDOW, rows, "tsel-tie"))
        compute_bts_presence(con, settings, WINDOW, WINDOW + timedelta(minutes=15), "run-tie", rule=rule)
        assert presence(con) == expected


def test_market_shares_come_from_the_contracts():
    settings = get_settings()
    contracts = operator_contracts(settings.contracts_dir)
    assert market_shares(settings) == {op: c.market_share for op, c in contracts.items() if c.market_share}


def test_district_density_apportions_rolls_up_and_scales_by_market_share(home: Path):
    settings = get_settings(home)
    shares = market_shares(settings)
    end = WINDOW + timedelta(minutes=15)
    with connect(settings.warehouse_path) as con:
        compute_bts_presence(con, settings, WINDOW, end, "run-1", rule="last")
        compute_district_density(con, settings, WINDOW, end, "run-1")
        rows = {r[0]: r[1:] for r in con.execute(
            "SELECT district_code, subscribers, people_estimate, density_per_km2, operators_reporting, drop_ids "
            "FROM district_density").fetchall()}
    t, i = shares["telkomsel"], shares["indosat"]
    # last rule: telkomsel S1 = 2 (D, E) split 50/50 over L1/L2, S2 = 4 in L3; indosat IS1 = 3 in L2.
    expected_subscribers = {"L1": 1.0, "L2": 4.0, "L3": 4.0, "W1": 0.0, "KC1": 5.0, "KC2": 4.0, "K1": 9.0}
    # Pooled estimator: every operator's subscribers over the total share of the operators
    # reporting in the window (each operator alone already estimates everybody: summing
    # per-operator estimates would count the population once per operator).
    expected_people = {code: subscribers / (t + i) for code, subscribers in expected_subscribers.items()}
    land = {"L1": 2, "L2": 3, "L3": 5, "KC1": 5, "KC2": 5, "K1": 10}  # water W1 excluded
    assert set(rows) == set(expected_subscribers)
    for code, (subscribers, people, density, operators, drop_ids) in rows.items():
        assert subscribers == pytest.approx(expected_subscribers[code])
        assert people == pytest.approx(expected_people[code])
        if code == "W1":
            assert density is None
        else:
            assert density == pytest.approx(expected_people[code] / land[code])
        assert sorted(drop_ids) == ["isat-1", "tsel-1"]
    assert rows["L2"][3] == 2 and rows["L1"][3] == 1 and rows["W1"][3] == 0


def test_multi_sim_factor_divides_people(home: Path):
    settings = get_settings(home)
    doubled = settings.with_config(density={"multi_sim_factor": 2.0})
    end = WINDOW + timedelta(minutes=15)
    with connect(settings.warehouse_path) as con:
        compute_bts_presence(con, settings, WINDOW, end, "run-1", rule="last")
        compute_district_density(con, settings, WINDOW, end, "run-1")
        single = con.execute("SELECT people_estimate FROM district_density WHERE district_code = 'K1'").fetchone()[0]
        compute_district_density(con, doubled, WINDOW, end, "run-2")
        halved = con.execute("SELECT people_estimate FROM district_density WHERE district_code = 'K1'").fetchone()[0]
    assert halved == pytest.approx(single / 2)


def test_published_density_is_k_anonymous_with_complementary_suppression(home: Path):
    settings = get_settings(home)
    small_k = settings.with_config(privacy={"k_anonymity": 3})
    end = WINDOW + timedelta(minutes=15)
    with connect(settings.warehouse_path) as con:
        compute_bts_presence(con, small_k, WINDOW, end, "run-1", rule="last")
        result = compute_district_density(con, small_k, WINDOW, end, "run-1")
        published = {r[0]: r[1:] for r in con.execute(
            "SELECT district_code, people_estimate, density_per_km2, suppressed, suppression "
            "FROM district_density_published").fetchall()}
    # value = min(subscribers, people): L1 1, W1 0 -> primary; L2 4, L3 4, KC1 5, KC2 4, K1 9 shown
    # except: KC2 has W1 hidden alone under a shown parent -> L3 hidden too; KC1 has L1 alone -> L2 hidden.
    assert published["L1"][3] == "primary" and published["W1"][3] == "primary"
    assert published["L2"][3] == "complementary" and published["L3"][3] == "complementary"
    for code in ("KC1", "KC2", "K1"):
        people, density, suppressed, kind = published[code]
        assert not suppressed and kind is None and people > 3 and density is not None
    for code in ("L1", "L2", "L3", "W1"):
        assert published[code][0] is None and published[code][1] is None and published[code][2]
    assert result["published_primary"] == 2 and result["published_complementary"] == 2


def _materialize(home: Path, assets, instance, **kwargs):
    return dg.materialize(assets, resources={"crowd": CrowdPlatform(home=str(home))}, instance=instance,
                          raise_on_error=True, **kwargs)


def test_assets_and_checks_in_dagster_and_rerun_replaces(home: Path):
    with dg.instance_for_test() as instance:
        for _ in range(2):  # the second run must replace, not add
            result = _materialize(home, [bts_presence, district_density, *DENSITY_CHECKS], instance,
                                  partition_key=WINDOW_KEY, selection=["bts_presence", "district_density"])
            assert result.success
            checks = result.get_asset_check_evaluations()
            by_name = {evaluation.check_name: evaluation.passed for evaluation in checks}
            assert by_name["district_density_levels_consistent"]
            assert by_name["district_density_published_k_anonymous"]
            assert by_name["bts_presence_cells_match_sites"]
        settings = get_settings(home)
        with connect(settings.warehouse_path) as con:
            # configured rule is 'last': 5 telkomsel rows + 2 indosat rows, once
            assert con.execute("SELECT count(*) FROM bts_presence").fetchone()[0] == 7
            assert con.execute("SELECT count(*) FROM district_density").fetchone()[0] == 7
            assert con.execute("SELECT count(*) FROM district_density_published").fetchone()[0] == 7
            actions = [row[0] for row in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()]
            assert actions.count("bts_presence.materialize") == 2
            # the privacy rule: nothing subscriber-level in the audit details
            details = " ".join(row[0] for row in con.execute("SELECT details FROM audit_log").fetchall())
            assert key("telkomsel-A") not in details
        # nor in Dagster's event log
        logs = " ".join(str(record.dagster_event) for record in instance.all_logs(result.run_id))
        assert key("telkomsel-A") not in logs


def test_district_presence_daily_counts_each_subscriber_once_per_district(home: Path):
    settings = get_settings(home)
    later = WINDOW + timedelta(hours=2)
    with connect(settings.warehouse_path) as con:
        # Telkomsel A seen again at S2 two hours later (a second window of the same day):
        # still counted once in L3; B seen at S1 later: 0.5 in L1 and L2 each.
        add_drop(con, "tsel-2", "telkomsel", later,
                 write_events(home, "telkomsel", later, [("A", "c3", 1), ("B", "c1", 2)], "tsel-2"))
    with dg.instance_for_test() as instance:
        result = _materialize(home, [district_presence_daily], instance, partition_key="2020-03-10")
        assert result.success
    with connect(settings.warehouse_path) as con:
        rows = {r[0]: r[1] for r in con.execute(
            "SELECT district_code, subscribers FROM district_presence_daily WHERE day = DATE '2020-03-10'").fetchall()}
    # Telkomsel sites over the day: A {S1, S2}, B {S2, S1}, C {S1, S2}, D {S1, S2}, E {S1}, F {S2}.
    # L1: A, B, C, D, E each 0.5 -> 2.5; L3: A, B, C, D, F -> 5; indosat X, Y, Z in L2.
    # L2: 2.5 telkomsel + 3 indosat; KC1 (L1 + L2 weight 1.0 for S1): A, B, C, D, E = 5 + 3.
    assert rows["L1"] == pytest.approx(2.5)
    assert rows["L2"] == pytest.approx(5.5)
    assert rows["L3"] == pytest.approx(5.0)
    assert rows["KC1"] == pytest.approx(8.0)
    assert rows["K1"] == pytest.approx(9.0)  # A..F and X, Y, Z: each exactly once


@pytest.mark.parametrize("zone, expected", [
    # 01:00 UTC = 08:00 WIB / 06:45 NPT on 10 March; 17:00 UTC = 00:00 WIB 11 March but 22:45 NPT
    # 10 March; 18:30 UTC = 11 March in both.
    ("Asia/Jakarta", {date(2020, 3, 10): 9.0, date(2020, 3, 11): 2.0}),
    ("Asia/Kathmandu", {date(2020, 3, 10): 10.0, date(2020, 3, 11): 1.0}),
    ("UTC", {date(2020, 3, 10): 11.0}),
    # West of UTC the fixture's 01:00 UTC events are 22:00 on 9 March (BRT, UTC-3), a day this
    # range does not hold; 17:00 and 18:30 UTC are the afternoon of 10 March.
    ("America/Sao_Paulo", {date(2020, 3, 10): 2.0}),
])
def test_district_presence_daily_days_are_local_days(home: Path, zone: str, expected: dict):
    settings = get_settings(home).with_config(density={"local_timezone": zone})
    evening, night = WINDOW.replace(hour=17), WINDOW.replace(hour=18, minute=30)
    with connect(settings.warehouse_path) as con:
        add_drop(con, "tsel-e", "telkomsel", evening, write_events(home, "telkomsel", evening, [("N1", "c1", 1)], "tsel-e"))
        add_drop(con, "tsel-n", "telkomsel", night, write_events(home, "telkomsel", night, [("N2", "c3", 1)], "tsel-n"))
        # The local days 10 and 11 March: their bounds in UTC, as a local-day partition range gives them.
        start, _ = local_day_bounds(date(2020, 3, 10), zone)
        _, end = local_day_bounds(date(2020, 3, 11), zone)
        compute_district_presence_daily(con, settings, start, end, run_id=None)
        rows = dict(con.execute("SELECT day, subscribers FROM district_presence_daily WHERE district_code = 'K1'").fetchall())
    assert rows == pytest.approx(expected)
