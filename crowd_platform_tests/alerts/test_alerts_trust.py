"""Alerts a government can trust, on a real DuckDB file through real Dagster runs: incomplete
windows are not evaluated, late data carries forward to every later window, and an alert that
no longer holds is retracted with a cancellation to every operator that was sent it."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg

from crowd_platform.alerts.assets import broadcast_requests, crowd_alerts
from crowd_platform.alerts.checks import crowd_alerts_consistent, retractions_cancelled
from crowd_platform.alerts.engine import evaluate_range
from crowd_platform.alerts.rules import rules_from_settings
from crowd_platform.common.partitions import range_tags, window_key
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform_tests.support.alerts_warehouse import seed_completeness, seed_reference, seed_windows, window

WINDOWS = 10
K1 = {1: 3500.0, 2: 3500.0, 3: 4500.0}  # on complete data: opened@2, escalated@3, closed@5


def _seed(home, k1=K1) -> CrowdPlatform:
    crowd = CrowdPlatform(home=str(home))
    with crowd.warehouse() as con:
        seed_reference(con)
        seed_windows(con, WINDOWS, kelurahan_k1=k1)
    return crowd


def _run(crowd: CrowdPlatform, instance, assets, first: int, last: int) -> dg.ExecuteInProcessResult:
    tags = range_tags(window_key(window(first)), window_key(window(last)))
    return dg.materialize(assets, resources={"crowd": crowd}, instance=instance, tags=tags)


def _alerts(crowd: CrowdPlatform) -> list[tuple]:
    with crowd.warehouse(read_only=True) as con:
        return con.execute("SELECT * EXCLUDE (run_id, updated_at) FROM crowd_alerts ORDER BY alert_id").fetchall()


def _transitions(crowd: CrowdPlatform) -> list[tuple]:
    with crowd.warehouse(read_only=True) as con:
        return con.execute("SELECT alert_id, window_start, transition, observed, ratio, robust_z "
                           "FROM alert_transitions ORDER BY ALL").fetchall()


def _set_completeness(crowd: CrowdPlatform, indexes, arrived, deadline=None) -> None:
    with crowd.warehouse() as con:
        for index in indexes:
            seed_completeness(con, window(index), arrived=arrived, deadline=deadline)


def _evaluations(crowd: CrowdPlatform) -> dict:
    with crowd.warehouse(read_only=True) as con:
        return {row[0]: (row[1], row[2]) for row in con.execute(
            "SELECT window_start, evaluated, reason FROM alert_evaluations ORDER BY window_start").fetchall()}


def test_window_of_one_operator_is_not_evaluated_and_raises_nothing(tmp_path):
    """Half the market (below alerts.min_market_share 0.9) past its latency: recorded, not judged."""
    crowd = _seed(tmp_path / "home")
    _set_completeness(crowd, range(WINDOWS), arrived=("xl",))
    with dg.instance_for_test() as instance:
        assert _run(crowd, instance, [crowd_alerts, broadcast_requests], 0, WINDOWS - 1).success
    assert _alerts(crowd) == []
    evaluations = _evaluations(crowd)
    assert all(not evaluated for evaluated, _ in evaluations.values())
    assert all(reason.startswith("incomplete: 50% of the expected market share reporting (missing telkomsel)")
               for _, reason in evaluations.values())
    with crowd.warehouse(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM broadcast_requests").fetchone()[0] == 0


def test_waiting_window_is_decided_once_its_latency_has_passed(tmp_path):
    crowd = _seed(tmp_path / "home")
    deadline = window(WINDOWS) + timedelta(minutes=30)
    _set_completeness(crowd, range(WINDOWS), arrived=("telkomsel", "xl"))
    _set_completeness(crowd, [2], arrived=("telkomsel",), deadline=deadline)
    settings, rules = crowd.settings, rules_from_settings(crowd.settings)
    with crowd.warehouse() as con:
        evaluate_range(con, settings, rules, window(0), window(WINDOWS), run_id="early", code_version="t",
                       now=deadline - timedelta(minutes=5))
    assert _evaluations(crowd)[window(2)][1].startswith("waiting: 50% of the expected market share reporting")
    # The operator never delivers: once overdue, 50 % is below the minimum share and the window
    # stays not evaluated, now for that reason (a later run takes the waiting window in).
    with crowd.warehouse() as con:
        evaluate_range(con, settings, rules, window(3), window(4), run_id="later", code_version="t",
                       now=deadline + timedelta(minutes=1))
    assert _evaluations(crowd)[window(2)][1].startswith("incomplete: 50%")


def test_late_data_carries_forward_to_the_same_alerts_as_on_time(tmp_path):
    """Windows 1-3 arrive incomplete (one of two operators); the whole range is evaluated; then
    the late operator lands for window 1 only. Re-evaluating window 1 carries forward through
    every later window: the same alerts and transitions as processing everything on time."""
    on_time, late = _seed(tmp_path / "on_time"), _seed(tmp_path / "late")
    _set_completeness(late, [1, 2, 3], arrived=("xl",))
    with dg.instance_for_test() as instance:
        assert _run(on_time, instance, [crowd_alerts], 0, WINDOWS - 1).success
        assert _run(late, instance, [crowd_alerts], 0, WINDOWS - 1).success
        assert _alerts(late) == []
        _set_completeness(late, [1, 2, 3], arrived=("telkomsel", "xl"))
        result = _run(late, instance, [crowd_alerts], 1, 1)
    assert result.success
    assert _transitions(late) == _transitions(on_time) and _transitions(on_time)
    assert _alerts(late) == _alerts(on_time)
    summary = result.asset_materializations_for_node("crowd_alerts")[0].metadata
    assert summary["windows_carried_forward"].value == WINDOWS - 2


def test_alert_that_no_longer_holds_is_retracted_and_cancelled_per_operator(tmp_path):
    """An alert is raised and broadcast on what arrived; a corrected redelivery shows no crowd.
    The alert stays visible as retracted, with an audit record, and every operator that was sent
    its request gets one cancellation (idempotent across reruns)."""
    crowd = _seed(tmp_path / "home")
    with dg.instance_for_test() as instance:
        assert _run(crowd, instance, [crowd_alerts, broadcast_requests], 0, WINDOWS - 1).success
        with crowd.warehouse(read_only=True) as con:
            sent = con.execute("SELECT DISTINCT operator FROM broadcast_requests WHERE transition IN ('opened', 'escalated')"
                               ).fetchall()
        assert sent
        with crowd.warehouse() as con:  # the corrected delivery: K1 was never crowded
            con.execute("UPDATE district_density SET people_estimate = 2000.0 WHERE district_code = 'K1'")
            con.execute("UPDATE district_density SET people_estimate = 4000.0 WHERE district_code IN ('C1', 'KB1')")
        for _ in range(2):  # a rerun adds no second retraction or cancellation
            result = _run(crowd, instance, [crowd_alerts, broadcast_requests, crowd_alerts_consistent,
                                            retractions_cancelled], 1, 1)
            assert result.success
        checks = {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}
    assert {"crowd_alerts_consistent", "retractions_cancelled"} <= set(checks) and all(checks.values()), checks
    with crowd.warehouse(read_only=True) as con:
        states = con.execute("SELECT DISTINCT state FROM crowd_alerts").fetchall()
        cancellations = con.execute("SELECT alert_id, operator, outbox_path FROM broadcast_requests "
                                    "WHERE transition = 'retracted' ORDER BY ALL").fetchall()
        retracted_audit = con.execute("SELECT count(*) FROM audit_log WHERE action = 'alert_retracted'").fetchone()[0]
        alerts = con.execute("SELECT count(*) FROM crowd_alerts").fetchone()[0]
    assert states == [("retracted",)]
    assert retracted_audit == alerts
    assert sorted({operator for _, operator, _ in cancellations}) == sorted(operator for (operator,) in sent)
    assert len(cancellations) == len({(alert, operator) for alert, operator, _ in cancellations})
    body = json.loads(crowd.settings.resolve(cancellations[0][2]).read_text(encoding="utf-8"))
    assert body["transition"] == "retracted" and body["crowd_estimate"]["value"] is None
    assert "abaikan" in body["message"]["id"] and "disregard" in body["message"]["en"]


def test_one_crowd_at_a_place_served_by_two_operators_is_one_alert_to_both(tmp_path):
    """Telkomsel's s1 and XL's s2 stand at one physical place (site_places): their subscribers
    are added up against the place's baseline, one alert opens, and both operators get it."""
    crowd = CrowdPlatform(home=str(tmp_path / "home"))
    with crowd.warehouse() as con:
        seed_reference(con)
        con.execute("DELETE FROM density_baseline WHERE level = 'site' AND place_id IN ('telkomsel:s1', 'xl:s2')")
        con.execute("INSERT INTO density_baseline (day, level, place_id, time_of_day, median, mad, n_obs, kind, run_id) "
                    "SELECT day, 'site', 'telkomsel:s1', time_of_day, 200.0, 10.0, 4, 'weekly', 'seed' "
                    "FROM (SELECT DISTINCT day, time_of_day FROM density_baseline)")
        con.execute("INSERT INTO site_places VALUES ('telkomsel:s1', 'telkomsel:s1', 106.828, -6.1757), "
                    "('xl:s2', 'telkomsel:s1', 106.828, -6.1757)")
        seed_windows(con, WINDOWS, site_s1={6: 400.0, 7: 400.0, 8: 400.0})
        con.execute("UPDATE bts_presence SET subscribers = 400 WHERE place_id = 'xl:s2' "
                    "AND window_start IN (?, ?, ?)", [window(6), window(7), window(8)])
    with dg.instance_for_test() as instance:
        assert _run(crowd, instance, [crowd_alerts, broadcast_requests], 0, WINDOWS - 1).success
    with crowd.warehouse(read_only=True) as con:
        alerts = con.execute("SELECT place_id, observed FROM crowd_alerts WHERE level = 'site'").fetchall()
        operators = con.execute("SELECT DISTINCT r.operator FROM broadcast_requests r JOIN crowd_alerts a USING (alert_id) "
                                "WHERE a.level = 'site' ORDER BY 1").fetchall()
    assert alerts == [("telkomsel:s1", 800.0)]
    assert operators == [("telkomsel",), ("xl",)]
