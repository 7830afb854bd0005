"""`crowd-platform evaluate` on alerts from a real run and a hand-made ground truth."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import pytest

from crowd_platform.cli import main
from crowd_platform.alerts.evaluation import Alert, evaluate, matches
from crowd_platform.alerts.assets import crowd_alerts
from crowd_platform.common.partitions import range_tags, window_key
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform_tests.support.alerts_warehouse import seed_reference, seed_windows, window

WINDOWS = 12


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


GATHERING_AT_K1 = {"id": "g1", "kelurahan_code": "K1", "kelurahan_name": "Gambir", "kecamatan_code": "C1",
                   "kecamatan_name": "Gambir Kec", "lon": 106.8271, "lat": -6.1755,
                   "start": _iso(window(1) + timedelta(minutes=5)), "end": _iso(window(4)),
                   "extra_subscribers": 1500, "people_equivalent": 3000}
MISSED_GATHERING = {"id": "g2", "kelurahan_code": "K9", "kelurahan_name": "Elsewhere", "kecamatan_code": "C9",
                    "kecamatan_name": "Elsewhere Kec", "lon": 106.95, "lat": -6.25,
                    "start": _iso(window(9)), "end": _iso(window(11)),
                    "extra_subscribers": 300, "people_equivalent": 600}


@pytest.fixture
def home(tmp_path):
    crowd = CrowdPlatform(home=str(tmp_path))
    with crowd.warehouse() as con:
        seed_reference(con)
        # K1 crowd in windows 1-3 (alert opened at 2); site s1 crowd in windows 6-8 (opened at 7, no gathering).
        seed_windows(con, WINDOWS, kelurahan_k1={1: 3500.0, 2: 3500.0, 3: 4500.0}, site_s1={6: 400, 7: 400, 8: 400})
    with dg.instance_for_test() as instance:
        tags = range_tags(window_key(window(0)), window_key(window(WINDOWS - 1)))
        assert dg.materialize([crowd_alerts], resources={"crowd": crowd}, instance=instance, tags=tags).success
    (tmp_path / "ground_truth.json").write_text(json.dumps({"gatherings": [GATHERING_AT_K1, MISSED_GATHERING]}))
    return tmp_path


def test_evaluate_cli_json_metrics(home, capsys):
    assert main(["evaluate", "--home", str(home), "--json"]) == 0
    output = capsys.readouterr().out
    report = json.loads(output[output.index("{"):])
    assert report["alerts"] == 2 and report["alerts_matching_a_gathering"] == 1
    assert report["precision"] == 0.5
    assert report["recall_by_band"][">= 2000 people"] == {"gatherings": 1, "detected": 1, "recall": 1.0}
    assert report["recall_by_band"]["500-1999 people"] == {"gatherings": 1, "detected": 0, "recall": 0.0}
    assert report["target_group"]["recall"] == 1.0 and report["target_group"]["recall_within_2_windows"] == 1.0
    # Start 03:20 falls in window 03:15 (window 1); the alert opened in window 2.
    assert report["latency_windows"]["values"] == [1]
    false = report["false_alerts"]
    assert false["districts"] == 0 and false["sites"] == 1
    # 12 evaluated windows = 0.125 day; 3 districts at the alert levels (K1, K2, C1); 3 sites.
    assert false["normal_days"] == 0.125 and false["district_count"] == 3 and false["site_count"] == 3
    assert false["per_100_districts_per_normal_day"] == 0.0
    assert false["per_100_sites_per_normal_day"] == pytest.approx(1 / 0.03 / 0.125, rel=1e-3)


def test_evaluate_cli_table_and_bad_input(home, capsys, tmp_path_factory):
    assert main(["evaluate", "--home", str(home)]) == 0
    table = capsys.readouterr().out
    assert "precision" in table and "0.5" in table and "false district alerts per 100 districts" in table
    broken = tmp_path_factory.mktemp("gt") / "gt.json"
    broken.write_text(json.dumps({"gatherings": [{"id": "x"}]}))
    assert main(["evaluate", "--home", str(home), "--ground-truth", str(broken)]) == 2
    assert "lacks" in capsys.readouterr().err


def test_matching_by_place_level_distance_and_time():
    kabkota_of = {"C1": "KB1"}
    opened = window(2)
    for level, place in (("kelurahan", "K1"), ("kecamatan", "C1"), ("kabkota", "KB1")):
        assert matches(Alert("a", level, place, opened), GATHERING_AT_K1, kabkota_of, 15, 1500, 2)
    assert not matches(Alert("a", "kelurahan", "K2", opened), GATHERING_AT_K1, kabkota_of, 15, 1500, 2)
    near_site = Alert("a", "site", "s", opened, 106.8370, -6.1755)  # ~1.1 km east
    far_site = Alert("a", "site", "s", opened, 106.8500, -6.1755)   # ~2.5 km east
    assert matches(near_site, GATHERING_AT_K1, kabkota_of, 15, 1500, 2)
    assert not matches(far_site, GATHERING_AT_K1, kabkota_of, 15, 1500, 2)
    # Time: from the start window to end + 2 windows.
    assert matches(Alert("a", "kelurahan", "K1", window(6)), GATHERING_AT_K1, kabkota_of, 15, 1500, 2)
    assert not matches(Alert("a", "kelurahan", "K1", window(7)), GATHERING_AT_K1, kabkota_of, 15, 1500, 2)
    assert not matches(Alert("a", "kelurahan", "K1", window(0)), GATHERING_AT_K1, kabkota_of, 15, 1500, 2)


def test_holiday_alerts_are_not_counted_as_normal_day_false_alerts():
    alert = Alert("a", "kelurahan", "K2", window(2))
    local_day = (window(2) + timedelta(hours=7)).date()  # WIB
    common = dict(kabkota_of={}, district_count=100, site_count=10, normal_days=1.0)
    assert evaluate([alert], [], holiday_dates=set(), **common)["false_alerts"]["per_100_districts_per_normal_day"] == 1.0
    assert evaluate([alert], [], holiday_dates={local_day}, **common)["false_alerts"]["districts"] == 0
    # Holidays are local dates of the configured zone: 18:30 UTC is already the next day in
    # Jakarta (01:30) and Kathmandu (00:15), not yet in UTC.
    evening = Alert("b", "kelurahan", "K2", window(0).replace(hour=18, minute=30))
    next_day = evening.opened_window.date() + timedelta(days=1)
    for zone, counted in (("Asia/Jakarta", 0), ("Asia/Kathmandu", 0), ("UTC", 1)):
        report = evaluate([evening], [], holiday_dates={next_day}, local_timezone=zone, **common)
        assert report["false_alerts"]["districts"] == counted, zone


def test_evaluate_cli_day_and_area_filters(home, capsys):
    day = window(0).strftime("%Y-%m-%d")
    assert main(["evaluate", "--home", str(home), "--json", "--day", day, "--area", "C1"]) == 0
    output = capsys.readouterr().out
    report = json.loads(output[output.index("{"):])
    assert report["alerts"] == 2 and report["false_alerts"]["district_count"] == 3
    assert report["false_alerts"]["normal_days"] == 0.125
    # Another day: no alert opened and no window evaluated on it.
    other = (window(0) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert main(["evaluate", "--home", str(home), "--json", "--day", other]) == 0
    output = capsys.readouterr().out
    report = json.loads(output[output.index("{"):])
    assert report["alerts"] == 0 and report["false_alerts"]["normal_days"] == 0
    assert report["target_group"]["detected"] == 0
    assert main(["evaluate", "--home", str(home), "--area", "Nowhere"]) == 2
    assert "area" in capsys.readouterr().err


def test_gathering_size_is_the_people_it_adds_to_its_kelurahan():
    """3 000 participants of whom only 1 200 would have been elsewhere: not in the >= 2 000 target group."""
    alert = Alert("a1", "kelurahan", "K1", window(2))
    mostly_local = {**GATHERING_AT_K1, "people_added": 1200}
    report = evaluate([alert], [mostly_local], kabkota_of={}, district_count=100, site_count=0, normal_days=1.0,
                      holiday_dates=set())
    assert report["target_group"]["gatherings"] == 0
    assert report["recall_by_band"]["500-1999 people"] == {"gatherings": 1, "detected": 1, "recall": 1.0}
    assert report["per_gathering"][0]["people_added"] == 1200 and report["per_gathering"][0]["people_equivalent"] == 3000
    widely_drawn = {**GATHERING_AT_K1, "people_added": 2400}
    report = evaluate([alert], [widely_drawn], kabkota_of={}, district_count=100, site_count=0, normal_days=1.0,
                      holiday_dates=set())
    assert report["target_group"] == {"gatherings": 1, "detected": 1, "recall": 1.0, "detected_within_2_windows": 1,
                                      "recall_within_2_windows": 1.0}

