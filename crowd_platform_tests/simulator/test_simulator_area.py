"""Full-scale area populations (simulate(area=...)) and weekly day steps, used by
bench/eval_detection.py; and `evaluate --day/--area`."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import numpy as np
import pytest

from crowd_platform.common.settings import get_settings
from crowd_platform.simulator import simulate, simulated_windows
from crowd_platform.simulator.population import make_area_subscribers
from crowd_platform.simulator.world import build_world


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
    # People added to the kelurahan: participants who would otherwise have been elsewhere, per window
    # (03:15, 03:30, 03:45), sustained = the smallest; never more than the participants.
    record = truth["gatherings"][0]
    added = [entry["subscribers_added"] for entry in record["subscribers_added_by_window"]]
    assert [entry["window_start"] for entry in record["subscribers_added_by_window"]] == [
        "2020-03-27T03:15:00Z", "2020-03-27T03:30:00Z", "2020-03-27T03:45:00Z"]
    assert all(0 <= value <= 250 for value in added)
    assert record["people_added"] == round(min(added) / 1.25)
    assert summary["windows"] == 4 and summary["total_events"] > 0
    with pytest.raises(ValueError, match="unknown kecamatan"):
        simulate(tmp_path / "x", date(2020, 3, 27), 1, 1, 3, hours=(3, 4), gatherings=[], area=["Atlantis"])


def test_people_added_leaves_out_participants_already_in_the_kelurahan(world):
    """A participant at home in the gathering's own kelurahan adds nobody; one at work elsewhere adds one."""
    from datetime import timedelta

    from crowd_platform.simulator.gatherings import ActiveGathering, record_people_added

    area = world.kelurahan["kec_name"].to_numpy() == "Johar Baru"
    subscribers, _ = make_area_subscribers(world, 200_000, 5, area)
    start = datetime(2020, 3, 27, 3, 15, tzinfo=timezone.utc)  # 10:15 WIB on a working Friday
    residents_at_home = np.flatnonzero(~subscribers.commuter & area[subscribers.home_kelurahan])[:50]
    row = int(subscribers.home_kelurahan[residents_at_home[0]])
    residents_at_home = residents_at_home[subscribers.home_kelurahan[residents_at_home] == row]
    commuters_elsewhere = np.flatnonzero(subscribers.commuter & (subscribers.place_kelurahan[:, 1] != row)
                                         & (subscribers.place_kelurahan[:, 0] != row))[:40]
    participants = np.sort(np.concatenate([residents_at_home, commuters_elsewhere]))
    gathering = ActiveGathering(record={}, start=start, end=start + timedelta(minutes=30), xy=np.zeros(2),
                                participants=participants, kelurahan_row=row)
    record_people_added([gathering], subscribers, 5, 1.25)
    added = [entry["subscribers_added"] for entry in gathering.record["subscribers_added_by_window"]]
    assert len(added) == 2
    # Non-commuters stay home unless on an outing (a few per cent); commuters are at work or on the road.
    for value in added:
        assert len(commuters_elsewhere) - 3 <= value <= len(commuters_elsewhere) + len(residents_at_home) // 4
    assert gathering.record["people_added"] == round(min(added) / 1.25)
