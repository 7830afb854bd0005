"""The warehouse engine: run the state machine over windows and replace their rows.

:func:`evaluate_range` reads the state after the window before the range
(``alert_place_state``), processes windows in order and replaces the range's rows in one
transaction with the audit records of what changed, so running windows one by one or as a
range gives the same rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from crowd_platform.common import audit
from crowd_platform.common.crashpoints import crash_point
from crowd_platform.common.warehouse import fetch_dicts, insert_rows, read_sql, transaction
from crowd_platform.alerts.rules import SITE_LEVEL, AlertRules, Observation, Score, score
from crowd_platform.alerts.state_machine import PlaceState, WindowInput, run_windows

TRANSITION_AUDIT_ACTIONS = {"opened": "alert_opened", "escalated": "alert_escalated", "closed": "alert_closed"}


def _window_step(settings: Any) -> timedelta:
    return timedelta(minutes=settings.window_minutes)


def _state_from_row(row: dict[str, Any]) -> PlaceState:
    evidence = None
    if row["observed"] is not None:
        evidence = Score(row["observed"], row["baseline_median"], row["baseline_mad"], row["ratio"], row["robust_z"],
                         row["excess"], True, row["severity"])
    opened = row["opened_window"].astimezone(timezone.utc) if row["opened_window"] else None
    return PlaceState(streak=row["streak"], quiet=row["quiet"], cooldown_left=row["cooldown_left"],
                      alert_id=row["alert_id"], severity=row["severity"], opened_window=opened,
                      alert_windows=row["alert_windows"], evidence=evidence, drop_ids=tuple(row["drop_ids"] or ()))


def load_prior_state(con: Any, window_before: datetime) -> dict[tuple[str, str], PlaceState]:
    rows = fetch_dicts(con, "SELECT * FROM alert_place_state WHERE window_start = ?", [window_before])
    return {(row["level"], row["place_id"]): _state_from_row(row) for row in rows}


def load_window_inputs(con: Any, start: datetime, end: datetime, rules: AlertRules, step_size: timedelta) -> list[WindowInput]:
    district_levels = [level for level in rules.levels if level != SITE_LEVEL]
    rows = con.execute(read_sql("alerts/crowd_alerts_observations"),
                       {"start": start, "end": end, "levels": district_levels or ["<none>"],
                        "include_sites": SITE_LEVEL in rules.levels}).fetchall()
    days_with_baseline = {day for (day,) in con.execute(read_sql("alerts/crowd_alerts_baseline_days"),
                                                        {"start": start, "end": end, "levels": list(rules.levels)}).fetchall()}
    by_window: dict[datetime, dict[tuple[str, str], Observation]] = {}
    for window_start, level, place_id, observed, median, mad, drop_ids in rows:
        window_start = window_start.astimezone(timezone.utc)
        by_window.setdefault(window_start, {})[(level, place_id)] = Observation(
            observed, median, mad, tuple(sorted(drop_ids or ())))
    inputs, current = [], start
    while current < end:
        inputs.append(WindowInput(current, current.date() in days_with_baseline, by_window.get(current, {})))
        current += step_size
    return inputs


def _contract_versions(con: Any, drop_ids: Iterable[str]) -> list[str]:
    ids = sorted(set(drop_ids))
    if not ids:
        return []
    rows = con.execute(
        "SELECT DISTINCT contract_id || '@' || contract_version FROM drops WHERE list_contains(?, drop_id) "
        "AND contract_id IS NOT NULL ORDER BY 1", [ids]).fetchall()
    return [row[0] for row in rows]


def _refresh_alert_rows(con: Any, alert_ids: set[str], run_id: str | None, code_version: str) -> None:
    """crowd_alerts is a projection of alert_transitions + the alert's latest state row."""
    now = datetime.now(timezone.utc)
    for alert_id in sorted(alert_ids):
        con.execute("DELETE FROM crowd_alerts WHERE alert_id = ?", [alert_id])
        transitions = fetch_dicts(con, "SELECT * FROM alert_transitions WHERE alert_id = ? ORDER BY window_start",
                                  [alert_id])
        if not transitions:
            continue  # a rerun decided this alert never happened
        latest = fetch_dicts(con, "SELECT * FROM alert_place_state WHERE alert_id = ? ORDER BY window_start DESC LIMIT 1",
                             [alert_id])
        if not latest:
            continue
        state = latest[0]
        kinds = [row["transition"] for row in transitions]
        closed = [row["window_start"] for row in transitions if row["transition"] == "closed"]
        status = "closed" if closed else ("escalated" if "escalated" in kinds else "open")
        place_name = con.execute(read_sql("alerts/crowd_alerts_place_name"),
                                 {"level": state["level"], "place_id": state["place_id"]}).fetchone()
        drop_ids = sorted(state["drop_ids"] or [])
        insert_rows(con, "crowd_alerts", {
            "alert_id": alert_id, "level": state["level"], "place_id": state["place_id"],
            "place_name": place_name[0] if place_name else state["place_id"], "state": status,
            "severity": state["severity"], "opened_window": state["opened_window"], "last_window": state["window_start"],
            "closed_window": closed[-1] if closed else None, "observed": state["observed"],
            "baseline_median": state["baseline_median"], "baseline_mad": state["baseline_mad"], "ratio": state["ratio"],
            "robust_z": state["robust_z"], "excess_people": state["excess"], "windows": state["alert_windows"],
            "drop_ids": drop_ids, "contract_versions": _contract_versions(con, drop_ids), "code_version": code_version,
            "run_id": run_id, "updated_at": now,
        })


def _state_row(window_start: datetime, level: str, place_id: str, state: PlaceState, run_id: str | None) -> dict[str, Any]:
    evidence = state.evidence
    return {
        "window_start": window_start, "level": level, "place_id": place_id, "streak": state.streak,
        "quiet": state.quiet, "cooldown_left": state.cooldown_left, "alert_id": state.alert_id,
        "severity": state.severity, "opened_window": state.opened_window, "alert_windows": state.alert_windows,
        "observed": evidence.observed if evidence else None, "baseline_median": evidence.median if evidence else None,
        "baseline_mad": evidence.mad if evidence else None, "ratio": evidence.ratio if evidence else None,
        "robust_z": evidence.robust_z if evidence else None, "excess": evidence.excess if evidence else None,
        "drop_ids": list(state.drop_ids), "run_id": run_id,
    }


def _evaluation_row(window: WindowInput, rules: AlertRules, run_id: str | None) -> dict[str, Any]:
    conditions = sum(1 for key, observation in window.observations.items()
                     if window.evaluated and score(observation, key[0], rules).condition)
    return {"window_start": window.window_start, "evaluated": window.evaluated,
            "reason": None if window.evaluated else "no density_baseline for this day",
            "places": len(window.observations) if window.evaluated else 0, "conditions": conditions, "run_id": run_id}


def _audit_changes(con: Any, settings: Any, transitions: list, previous: set, run_id: str | None, code_version: str) -> set:
    """Audit only what changed: a rerun that reproduces the same transitions adds nothing;
    a transition the rerun no longer produces is recorded as retracted. Returns the retracted."""
    current = {(t.alert_id, t.window_start, t.transition) for t in transitions}
    for t in transitions:
        if (t.alert_id, t.window_start, t.transition) in previous:
            continue
        audit.append(con, TRANSITION_AUDIT_ACTIONS[t.transition], purpose=settings.purpose, object_kind="crowd_alert",
                     object_id=t.alert_id, run_id=run_id,
                     details={"level": t.level, "place_id": t.place_id, "window_start": t.window_start.isoformat(),
                              "severity": t.severity, "ratio": t.ratio, "robust_z": t.robust_z,
                              "code_version": code_version})
    retracted = previous - current
    for alert_id, window_start, kind in sorted(retracted):
        audit.append(con, "alert_transition_retracted", purpose=settings.purpose, object_kind="crowd_alert",
                     object_id=alert_id, run_id=run_id,
                     details={"window_start": window_start.isoformat(), "transition": kind, "reason": "rerun"})
    return retracted


def _replace_range(con: Any, settings: Any, start: datetime, end: datetime, state_rows: list[dict], evaluation_rows: list[dict],
                   transitions: list, run_id: str | None, code_version: str) -> tuple[int, int]:
    """Replace the range's state, evaluation and transition rows and refresh the alerts they touch,
    in one transaction. Returns (transitions retracted, later windows already evaluated)."""
    with transaction(con):
        previous = {(row[0], row[1].astimezone(timezone.utc), row[2]) for row in con.execute(
            "SELECT alert_id, window_start, transition FROM alert_transitions WHERE window_start >= ? AND window_start < ?",
            [start, end]).fetchall()}
        touched = {alert_id for (alert_id,) in con.execute(
            "SELECT DISTINCT alert_id FROM alert_place_state WHERE window_start >= ? AND window_start < ? "
            "AND alert_id IS NOT NULL", [start, end]).fetchall()} | {key[0] for key in previous}
        for table in ("alert_place_state", "alert_transitions", "alert_evaluations"):
            con.execute(f"DELETE FROM {table} WHERE window_start >= ? AND window_start < ?", [start, end])
        insert_rows(con, "alert_place_state", state_rows)
        insert_rows(con, "alert_evaluations", evaluation_rows)
        insert_rows(con, "alert_transitions", [
            {"alert_id": t.alert_id, "window_start": t.window_start, "transition": t.transition, "observed": t.observed,
             "ratio": t.ratio, "robust_z": t.robust_z, "run_id": run_id} for t in transitions])
        retracted = _audit_changes(con, settings, transitions, previous, run_id, code_version)
        _refresh_alert_rows(con, touched | {t.alert_id for t in transitions}, run_id, code_version)
        later = con.execute("SELECT count(*) FROM alert_evaluations WHERE window_start >= ?", [end]).fetchone()[0]
        crash_point("alerts_writing")
    return len(retracted), later


def evaluate_range(
    con: Any,
    settings: Any,
    rules: AlertRules,
    start: datetime,
    end: datetime,
    *,
    run_id: str | None,
    code_version: str,
) -> dict[str, Any]:
    """Evaluate windows [start, end) in order and replace their rows. Returns a summary (counts only)."""
    step_size = _window_step(settings)
    prior = load_prior_state(con, start - step_size)
    inputs = load_window_inputs(con, start, end, rules, step_size)
    snapshots, transitions = run_windows(prior, inputs, rules)
    state_rows = [_state_row(window.window_start, level, place_id, state, run_id)
                  for window, snapshot in zip(inputs, snapshots) for (level, place_id), state in sorted(snapshot.items())]
    evaluation_rows = [_evaluation_row(window, rules, run_id) for window in inputs]
    retracted, later = _replace_range(con, settings, start, end, state_rows, evaluation_rows, transitions, run_id, code_version)

    skipped = [window.window_start.isoformat() for window in inputs if not window.evaluated]
    counts = {kind: sum(1 for t in transitions if t.transition == kind) for kind in ("opened", "escalated", "closed")}
    open_after = sum(1 for state in (snapshots[-1] if snapshots else {}).values() if state.alert_id)
    return {
        "windows": len(inputs),
        "windows_evaluated": len(inputs) - len(skipped),
        "windows_skipped_no_baseline": len(skipped),
        "skipped_windows": skipped[:20],
        "places_observed": sum(len(window.observations) for window in inputs if window.evaluated),
        "transitions_opened": counts["opened"],
        "transitions_escalated": counts["escalated"],
        "transitions_closed": counts["closed"],
        "transitions_retracted": retracted,
        "open_alerts_after_range": open_after,
        "later_windows_already_evaluated": later,
    }
