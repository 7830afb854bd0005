"""The alert rule and state machine, without Dagster or a warehouse."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from crowd_platform.alerts.rules import AlertRules, Observation, load_rules, score
from crowd_platform.alerts.state_machine import WindowInput, alert_id_for, run_windows
from crowd_platform.common.settings import PROJECT_ROOT

RULES = load_rules(PROJECT_ROOT / "config" / "alert_rules.yaml")
T0 = datetime(2020, 3, 23, 3, 0, tzinfo=timezone.utc)
KEY = ("kelurahan", "K1")


def windows_for(values: list[float], median: float = 2000.0, mad: float = 100.0) -> list[WindowInput]:
    return [WindowInput(T0 + timedelta(minutes=15 * index), True, {KEY: Observation(value, median, mad, (f"d{index}",))})
            for index, value in enumerate(values)]


def transitions_of(values: list[float], rules: AlertRules = RULES) -> list[tuple[int, str, int]]:
    _, transitions = run_windows({}, windows_for(values), rules)
    return [(int((t.window_start - T0) / timedelta(minutes=15)), t.transition, t.severity) for t in transitions]


def test_rules_file_defaults():
    """z >= 3 and 2 consecutive windows from the literature; no ratio condition and low spread floors at
    full scale (docs/decisions/008-alert-rules-full-scale.md); the sampled rules keep ratio 1.5 and 5 %."""
    assert RULES.robust_z_min == 3.0 and RULES.ratio_min_for("kelurahan") == 1.0 and RULES.ratio_min_for("site") == 1.0
    assert RULES.mad_floor_fraction == 0.005 and RULES.mad_floor_counting == pytest.approx(0.6745)
    assert RULES.min_consecutive == 2 and RULES.close_after == 2 and RULES.cooldown == 4
    assert RULES.min_excess_for("kelurahan") == 1000 and RULES.min_excess_for("unknown-level") == 1000
    sampled = load_rules(PROJECT_ROOT / "config" / "alert_rules_sampled.yaml")
    assert sampled.ratio_min_for("kelurahan") == 1.5 and sampled.mad_floor_fraction == 0.05


def test_ratio_per_level_and_counting_noise_floor(tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "condition:\n  robust_z_min: 3.0\n  ratio_min: {site: 1.5, default: 1.0}\n  mad_floor_fraction: 0.005\n"
        "  mad_floor_counting: 0.6745\n  mad_floor_min: 1.0\n  min_excess: {default: 100}\n")
    rules = load_rules(rules_file)
    assert rules.ratio_min_for("site") == 1.5 and rules.ratio_min_for("kelurahan") == 1.0
    # Flat history (MAD 0) at 10 000: the counting floor (0.6745 * 100) is above 0.5 % (50).
    assert rules.spread(10_000, 0) == pytest.approx(67.45)
    assert rules.spread(10_000, 400) == 400  # a real spread above the floors decides
    assert rules.spread(1_000_000, 0) == pytest.approx(5000)  # 0.5 % beats sqrt at a million
    # +400 on 10 000: z = 400 / (1.4826 * 67.45) = 4.0, ratio 1.04: an alert condition for a district...
    crowd = score(Observation(10_400, 10_000, 0), "kelurahan", rules)
    assert crowd.robust_z == pytest.approx(400 / (1.4826 * 67.45)) and crowd.condition and crowd.severity == 1
    # ...but not for a site, where this file keeps the literature's ratio 1.5.
    assert not score(Observation(10_400, 10_000, 0), "site", rules).condition
    # One number still means every level.
    rules_file.write_text("condition:\n  ratio_min: 1.2\n")
    assert load_rules(rules_file).ratio_min_for("site") == load_rules(rules_file).ratio_min_for("kecamatan") == 1.2


def test_score_uses_robust_z_ratio_and_excess():
    crowd = score(Observation(3500, 2000, 100), "kelurahan", RULES)
    assert crowd.robust_z == pytest.approx(1500 / (1.4826 * 100))
    assert crowd.ratio == pytest.approx(1.75) and crowd.excess == 1500
    assert crowd.condition and crowd.severity == 1
    assert score(Observation(4500, 2000, 100), "kelurahan", RULES).severity == 2
    assert score(Observation(7000, 2000, 100), "kelurahan", RULES).severity == 3
    # High z and ratio but too few extra people for a kelurahan: no condition.
    small = score(Observation(900, 200, 10), "kelurahan", RULES)
    assert small.ratio > 4 and small.robust_z > 3 and not small.condition


def test_zero_mad_is_floored():
    flat = score(Observation(2150, 2000, 0), "kelurahan", RULES)
    # spread = max(0, 0.5 % of 2000 = 10, 0.6745 * sqrt(2000) = 30.2, 1), not 0 (which would make z infinite)
    assert flat.robust_z == pytest.approx(150 / (1.4826 * 0.6745 * 2000 ** 0.5))
    assert not flat.condition  # z 3.35, but 150 people is below the kelurahan's min_excess (1 000)


def test_single_window_spike_does_not_open():
    assert transitions_of([2000, 3500, 2000, 2000]) == []


def test_opens_after_two_consecutive_windows():
    assert transitions_of([2000, 3500, 3500]) == [(2, "opened", 1)]
    _, transitions = run_windows({}, windows_for([3500, 3500]), RULES)
    assert transitions[0].alert_id == alert_id_for("kelurahan", "K1", T0 + timedelta(minutes=15))


def test_escalates_when_severity_band_rises_and_never_deescalates():
    assert transitions_of([3500, 3500, 4500, 7000, 3500]) == [
        (1, "opened", 1), (2, "escalated", 2), (3, "escalated", 3)]


def test_hysteresis_closes_only_after_two_quiet_windows():
    assert transitions_of([3500, 3500, 2000, 3500, 2000, 2000, 2000]) == [(1, "opened", 1), (5, "closed", 1)]


def test_cooldown_blocks_the_same_place_for_four_windows():
    values = [3500, 3500, 2000, 2000] + [3500] * 8
    result = transitions_of(values)
    # closed at window 3; windows 4..7 are cooled down; the streak since 4 opens at 8.
    assert result == [(1, "opened", 1), (3, "closed", 1), (8, "opened", 1)]


def test_state_carries_over_windows_without_baseline():
    inputs = windows_for([3500, 3500, 2000])
    gap = WindowInput(inputs[1].window_start + timedelta(minutes=15), False, {})
    inputs = inputs[:2] + [gap] + [WindowInput(gap.window_start + timedelta(minutes=15), True, inputs[2].observations)]
    snapshots, transitions = run_windows({}, inputs, RULES)
    assert [t.transition for t in transitions] == ["opened"]
    assert snapshots[2] == snapshots[1]  # unchanged across the unevaluated window
    assert snapshots[3][KEY].quiet == 1


def test_split_runs_equal_one_run():
    values = [3500, 3500, 4500, 2000, 2000, 3500, 3500, 3500, 3500, 3500, 3500, 2000]
    whole, whole_transitions = run_windows({}, windows_for(values), RULES)
    state, pieces = {}, []
    for single in windows_for(values):
        snapshots, transitions = run_windows(state, [single], RULES)
        state = snapshots[-1]
        pieces.extend(transitions)
    assert pieces == whole_transitions and state == whole[-1]


def test_opening_evidence_and_drops_cover_the_streak():
    snapshots, _ = run_windows({}, windows_for([3500, 3600]), RULES)
    opened = snapshots[-1][KEY]
    assert opened.alert_windows == 2 and opened.evidence.observed == 3600
    assert opened.drop_ids == ("d0", "d1")
