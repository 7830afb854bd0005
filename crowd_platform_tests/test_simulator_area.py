"""Full-scale area populations (simulate(area=...)) and weekly day steps, used by
bench/eval_detection.py; and `evaluate --day/--area`."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import numpy as np
import pytest

from crowd_platform.lib.settings import get_settings
from crowd_platform.lib.simulator import simulate, simulated_windows
from crowd_platform.lib.simulator.population import make_area_subscribers
from crowd_platform.lib.simulator.world import build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(get_settings(tmp_path_factory.mktemp("world")), 5)


def test_weekly_day_step_simulates_the_same_weekday(world):
    windows = simulated_windows(date(2020, 2, 21), 3, hours=(3, 5), day_step=7)
    assert len(windows) == 3 * 8
    assert sorted({window.date() for window in windows}) == [date(2020, 2, 21), date(2020, 2, 28), date(2020, 3, 6)]
    assert windows[0] == datetime(2020, 2, 21, 3, tzinfo=timezone.utc)
    assert simulated_windows(date(2020, 3, 23), 2) == simulated_windows(date(2020, 3, 23), 2, day_step=1)


def test_area_population_keeps_exactly_the_sims_tied_to_the_area(world):
    area = world.kelurahan["kec_name"].to_numpy() == "Johar Baru"
    total = 300_000
    subscribers, counts = make_area_subscribers(world, total, 5, area)
    assert counts["sims_drawn"] == total
    assert counts["kept"] == subscribers.count == counts["home_in_area"] + counts["work_in_area_only"]
    home_in = area[subscribers.home_kelurahan]
    # Everyone kept lives in the area or commutes to a workplace inside it.
    work_kelurahan = np.array([world.locate(*world.to_lonlat.transform(x, y)) for x, y in subscribers.work_xy[~home_in][:200]])
    assert area[work_kelurahan].mean() > 0.9  # points carry 40 m jitter: a few land across a border
    assert subscribers.commuter[~home_in].all()
    # Residents are kept in proportion to the area's population (binomial, 300 k draws).
    expected = total * world.population_weight[area].sum()
    assert abs(counts["home_in_area"] - expected) < 5 * np.sqrt(expected)
    again, _ = make_area_subscribers(world, total, 5, area)
    assert np.array_equal(again.home_xy, subscribers.home_xy) and np.array_equal(again.operator_of, subscribers.operator_of)
    with_visitors, visitor_counts = make_area_subscribers(world, total, 5, area, visitors=True)
    assert with_visitors.count == counts["kept"] + visitor_counts["third_place_in_area_only"] > counts["kept"]


def test_area_simulation_records_real_people_per_gathering(tmp_path):
    gathering = {"id": "g", "kelurahan": "Johar Baru", "start": "2020-03-27T03:15:00Z", "end": "2020-03-27T04:00:00Z",
                 "extra_subscribers": 250}
    summary = simulate(tmp_path, date(2020, 3, 27), 1, 1, 3, hours=(3, 4), gatherings=[gathering],
                       area=["Johar Baru"], sims_per_person=1.25, operators=["telkomsel"])
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert truth["area"]["kecamatan"] == ["Johar Baru"] and truth["area"]["sims_per_person"] == 1.25
    assert truth["subscribers"] == truth["area"]["kept"] > 10_000
    assert truth["gatherings"][0]["people_equivalent"] == 200  # 250 SIMs / 1.25 SIMs per person
    assert summary["windows"] == 4 and summary["total_events"] > 0
    with pytest.raises(ValueError, match="unknown kecamatan"):
        simulate(tmp_path / "x", date(2020, 3, 27), 1, 1, 3, hours=(3, 4), gatherings=[], area=["Atlantis"])
