"""crowd_alerts through real Dagster runs on a real DuckDB file: range vs one-by-one, reruns,
evidence and provenance, windows without a baseline."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import duckdb

from crowd_platform.alerts.assets import crowd_alerts
from crowd_platform.alerts.engine import NO_BASELINE
from crowd_platform.common.partitions import range_tags, window_key
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform_tests.support.alerts_warehouse import drop_id, seed_reference, seed_windows, window

# K1 (kelurahan): crowd in windows 1-3 (escalating at 3), quiet from 4 -> opened@2, escalated@3, closed@5.
K1 = {1: 3500.0, 2: 3500.0, 3: 4500.0}
# Site s1: crowd in windows 6-8 -> opened@7, closed@10.
S1 = {6: 400.0, 7: 400.0, 8: 400.0}
WINDOWS = 12


def _seed(home) -> CrowdPlatform:
    crowd = CrowdPlatform(home=str(home))
    with crowd.warehouse() as con:
        seed_reference(con)
        seed_windows(con, WINDOWS, kelurahan_k1=K1, site_s1=S1)
    return crowd


def _materialize(crowd: CrowdPlatform, instance, first: int, last: int) -> dg.ExecuteInProcessResult:
    tags = range_tags(window_key(window(first)), window_key(window(last)))
    return dg.materialize([crowd_alerts], resources={"crowd": crowd}, instance=instance, tags=tags)


def _snapshot(crowd: CrowdPlatform) -> dict[str, list[tuple]]:
    with crowd.warehouse(read_only=True) as con:
        return {
            "transitions": con.execute("SELECT alert_id, window_start, transition, observed, ratio, robust_z "
                                       "FROM alert_transitions ORDER BY ALL").fetchall(),
            "alerts": con.execute("SELECT * EXCLUDE (run_id, updated_at) FROM crowd_alerts ORDER BY alert_id").fetchall(),
            "state": con.execute("SELECT * EXCLUDE (run_id) FROM alert_place_state ORDER BY ALL").fetchall(),
            "audit": con.execute("SELECT action, object_id, details FROM audit_log WHERE action LIKE 'alert_%' "
                                 "ORDER BY seq").fetchall(),
        }


def test_range_equals_one_by_one_and_reruns_are_idempotent(tmp_path):
    ranged, single = _seed(tmp_path / "ranged"), _seed(tmp_path / "single")
    with dg.instance_for_test() as instance:
        assert _materialize(ranged, instance, 0, WINDOWS - 1).success
        for index in range(WINDOWS):
            assert _materialize(single, instance, index, index).success
        whole, pieces = _snapshot(ranged), _snapshot(single)
        assert whole["transitions"] and whole == pieces
        kinds = sorted((row[1], row[2]) for row in whole["transitions"])
        assert kinds == [(window(2), "opened"), (window(3), "escalated"), (window(5), "closed"),
                         (window(7), "opened"), (window(10), "closed")]
        # Rerun the whole range, then one window in the middle of the first alert: nothing changes.
        assert _materialize(ranged, instance, 0, WINDOWS - 1).success
        assert _materialize(ranged, instance, 3, 3).success
        assert _snapshot(ranged) == whole


def test_alert_rows_carry_evidence_and_provenance(tmp_path):
    crowd = _seed(tmp_path)
    with dg.instance_for_test() as instance:
        result = _materialize(crowd, instance, 0, WINDOWS - 1)
        run_id = result.run_id
    with crowd.warehouse(read_only=True) as con:
        rows = con.execute("SELECT level, place_id, place_name, state, severity, opened_window, closed_window, observed, "
                           "baseline_median, baseline_mad, ratio, robust_z, excess_people, windows, drop_ids, "
                           "contract_versions, code_version, run_id FROM crowd_alerts ORDER BY opened_window").fetchall()
        audit_actions = [row[0] for row in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()]
    assert len(rows) == 2
    kelurahan, site = rows
    (level, place, name, state, severity, opened, closed, observed, median, mad, ratio, z, excess, windows, drops,
     contracts, code, alert_run) = kelurahan
    assert (level, place, name, state, severity) == ("kelurahan", "K1", "Gambir", "closed", 2)
    assert opened == window(2) and closed == window(5)
    assert observed == 4500 and median == 2000 and mad == 100 and excess == 2500 and windows == 3
    assert ratio == 2.25 and z > 6
    # The drops of every window that fed the alert, and their contract versions.
    assert set(drops) == {drop_id(operator, index) for operator in ("telkomsel", "xl") for index in (1, 2, 3)}
    assert contracts == ["telkomsel-events@1.0.0", "xl-events@1.0.0"]
    assert code and alert_run == run_id
    assert site[0:4] == ("site", "telkomsel:s1", "Gambir", "closed") and site[5] == window(7)
    assert audit_actions.count("alert_opened") == 2 and audit_actions.count("alert_escalated") == 1
    assert audit_actions.count("alert_closed") == 2


def test_windows_without_baseline_are_not_evaluated(tmp_path):
    crowd = _seed(tmp_path)
    # Windows on the next UTC day have density but no baseline rows.
    next_day = window(0) + timedelta(days=1)
    with crowd.warehouse() as con:
        for offset in range(3):
            con.execute("INSERT INTO district_density (window_start, level, district_code, subscribers, "
                        "people_estimate, drop_ids) VALUES (?, 'kelurahan', 'K1', 5000, 9000, [])",
                        [next_day + timedelta(minutes=15 * offset)])
    with dg.instance_for_test() as instance:
        tags = range_tags(window_key(next_day), window_key(next_day + timedelta(minutes=30)))
        result = dg.materialize([crowd_alerts], resources={"crowd": crowd}, instance=instance, tags=tags)
    metadata = result.asset_materializations_for_node("crowd_alerts")[0].metadata
    assert metadata["windows_skipped_no_baseline"].value == 3 and metadata["windows_evaluated"].value == 0
    with crowd.warehouse(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM alert_transitions").fetchone()[0] == 0
        reasons = con.execute("SELECT DISTINCT reason FROM alert_evaluations").fetchall()
    assert reasons == [(NO_BASELINE,)]


def test_no_subscriber_values_in_alert_tables(tmp_path):
    crowd = _seed(tmp_path)
    with dg.instance_for_test() as instance:
        _materialize(crowd, instance, 0, WINDOWS - 1)
    connection = duckdb.connect(str(crowd.settings.warehouse_path), read_only=True)
    try:
        columns = {row[0] for row in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name IN "
            "('crowd_alerts', 'alert_transitions', 'alert_place_state')").fetchall()}
    finally:
        connection.close()
    assert not any("subscriber_key" in column or "msisdn" in column for column in columns)
