"""The warehouse engine: run the state machine over windows and replace their rows.

:func:`evaluate_range` reads the state after the window before the range
(``alert_place_state``), processes windows in order and replaces the range's rows in one
transaction with the audit records of what changed, so running windows one by one or as a
range gives the same rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from crowd_platform.common import audit
from crowd_platform.common.crashpoints import crash_point
from crowd_platform.common.warehouse import fetch_dicts, insert_rows, read_sql, transaction
from crowd_platform.density.completeness import SHARE_EPSILON
from crowd_platform.alerts.rules import SITE_LEVEL, AlertRules, Observation, Score, score
from crowd_platform.alerts.state_machine import PlaceState, WindowInput, run_windows

RETRACTED = "retracted"
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


NO_BASELINE = "no baseline: no comparable history of this window's day type and time of day"
NO_DATA = "no data: no accepted drop for this window"
# A window deferred while operators are within their latency is looked at again by later runs
# for this long; after that it stays not evaluated unless its data changes.
WAITING_LOOKBACK = timedelta(days=1)


def window_readiness(con: Any, start: datetime, end: datetime, min_share: float, now: datetime) -> dict[datetime, str | None]:
    """Per window with a completeness record: None if it may be evaluated, else the reason not.

    Complete windows are evaluated; an incomplete one waits while a missing operator is within
    its contract's latency, and is then evaluated only if the operators that reported cover at
    least ``min_share`` of the expected market share (a number scaled up from a few small
    operators is no basis for an SMS blast)."""
    readiness: dict[datetime, str | None] = {}
    for window_start, complete, completeness, missing, flagged, deadline in con.execute(
            "SELECT window_start, complete, completeness, missing_operators, coalesce(flagged_operators, []), "
            "latency_deadline FROM window_completeness WHERE window_start >= ? AND window_start < ?", [start, end]).fetchall():
        absent = ", ".join(f"{operator} (volume flagged)" if operator in flagged else operator for operator in missing)
        share = f"{completeness:.0%} of the expected market share reporting (missing {absent})"
        if complete:
            reason = None
        elif deadline is not None and now < deadline:
            reason = f"waiting: {share}; due by {deadline.astimezone(timezone.utc):%Y-%m-%dT%H:%MZ}"
        elif completeness + SHARE_EPSILON >= min_share:
            reason = None
        else:
            reason = f"incomplete: {share}, below {min_share:.0%}"
        readiness[window_start.astimezone(timezone.utc)] = reason
    return readiness


def load_window_inputs(con: Any, start: datetime, end: datetime, rules: AlertRules, step_size: timedelta,
                       min_share: float, now: datetime, local_zone: ZoneInfo) -> list[WindowInput]:
    """Each window of [start, end) with its observations, and whether it is evaluated: only if
    its slot has a baseline (same day type and time of day) and its data is ready."""
    district_levels = [level for level in rules.levels if level != SITE_LEVEL]
    rows = con.execute(read_sql("alerts/crowd_alerts_observations"),
                       {"start": start, "end": end, "levels": district_levels or ["<none>"],
                        "include_sites": SITE_LEVEL in rules.levels, "local_tz": local_zone.key}).fetchall()
    slots = set(con.execute(read_sql("alerts/crowd_alerts_baseline_slots"),
                            {"start": start, "end": end, "levels": list(rules.levels)}).fetchall())
    readiness = window_readiness(con, start, end, min_share, now)
    by_window: dict[datetime, dict[tuple[str, str], Observation]] = {}
    for window_start, level, place_id, observed, median, mad, drop_ids in rows:
        window_start = window_start.astimezone(timezone.utc)
        by_window.setdefault(window_start, {})[(level, place_id)] = Observation(
            observed, median, mad, tuple(sorted(drop_ids or ())))
    inputs, current = [], start
    while current < end:
        local = current.astimezone(local_zone)
        slot = (current.date(), local.hour * 60 + local.minute)
        reason = NO_BASELINE if slot not in slots else readiness.get(current, NO_DATA)
        inputs.append(WindowInput(current, reason is None, by_window.get(current, {}), reason))
        current += step_size
    return inputs


def evaluation_span(con: Any, start: datetime, end: datetime, step_size: timedelta, now: datetime) -> tuple[datetime, datetime]:
    """The windows a run for [start, end) must evaluate so that late data carries forward.

    Every window after the range that was already evaluated is evaluated again, in order, from
    the state this run produces: processing late gives the same alerts as processing on time.
    Windows shortly before the range that were waiting for operators within their latency are
    taken in too, so that they are decided once the latency has passed."""
    last = con.execute("SELECT max(window_start) FROM alert_evaluations WHERE window_start >= ?", [end]).fetchone()[0]
    span_end = max(end, last.astimezone(timezone.utc) + step_size) if last else end
    waiting = con.execute(
        "SELECT min(window_start) FROM alert_evaluations WHERE NOT evaluated AND starts_with(reason, 'waiting:') "
        "AND window_start >= ? AND window_start < ?", [max(start - WAITING_LOOKBACK, now - WAITING_LOOKBACK), start]
    ).fetchone()[0]
    span_start = min(start, waiting.astimezone(timezone.utc)) if waiting else start
    return span_start, span_end


def _contract_versions(con: Any, drop_ids: Iterable[str]) -> list[str]:
    ids = sorted(set(drop_ids))
    if not ids:
        return []
    rows = con.execute(
        "SELECT DISTINCT contract_id || '@' || contract_version FROM drops WHERE list_contains(?, drop_id) "
        "AND contract_id IS NOT NULL ORDER BY 1", [ids]).fetchall()
    return [row[0] for row in rows]


def _retract(con: Any, alert_id: str, previous: dict[str, Any], settings: Any, run_id: str | None, now: datetime) -> None:
    """An alert that no longer holds after new data stays visible as retracted (it may have been
    broadcast: broadcast_requests then sends each operator a cancellation)."""
    insert_rows(con, "crowd_alerts", {**previous, "state": RETRACTED, "run_id": run_id, "updated_at": now})
    audit.append(con, "alert_retracted", purpose=settings.purpose, object_kind="crowd_alert", object_id=alert_id,
                 run_id=run_id, details={"level": previous["level"], "place_id": previous["place_id"],
                                         "opened_window": previous["opened_window"].isoformat(),
                                         "previous_state": previous["state"], "reason": "no longer holds after new data"})


def _refresh_alert_rows(con: Any, settings: Any, alert_ids: set[str], run_id: str | None, code_version: str) -> int:
    """crowd_alerts is a projection of alert_transitions + the alert's latest state row; an alert
    whose opening is gone is retracted, never left without it. Returns alerts newly retracted."""
    now = datetime.now(timezone.utc)
    retracted = 0
    for alert_id in sorted(alert_ids):
        previous = fetch_dicts(con, "SELECT * FROM crowd_alerts WHERE alert_id = ?", [alert_id])
        con.execute("DELETE FROM crowd_alerts WHERE alert_id = ?", [alert_id])
        transitions = fetch_dicts(con, "SELECT * FROM alert_transitions WHERE alert_id = ? ORDER BY window_start",
                                  [alert_id])
        latest = fetch_dicts(con, "SELECT * FROM alert_place_state WHERE alert_id = ? ORDER BY window_start DESC LIMIT 1",
                             [alert_id])
        if not any(row["transition"] == "opened" for row in transitions) or not latest:
            if previous:
                _retract(con, alert_id, previous[0], settings, run_id, now)
                retracted += previous[0]["state"] != RETRACTED
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
    return retracted


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
            "reason": None if window.evaluated else window.reason,
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
    in one transaction. Returns (transitions retracted, alerts retracted)."""
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
        alerts_retracted = _refresh_alert_rows(con, settings, touched | {t.alert_id for t in transitions}, run_id,
                                               code_version)
        crash_point("alerts_writing")
    return len(retracted), alerts_retracted


def evaluate_range(
    con: Any,
    settings: Any,
    rules: AlertRules,
    start: datetime,
    end: datetime,
    *,
    run_id: str | None,
    code_version: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Evaluate windows [start, end), and every later window already evaluated, in order, and
    replace their rows. Returns a summary (counts only)."""
    now = now or datetime.now(timezone.utc)
    step_size = _window_step(settings)
    span_start, span_end = evaluation_span(con, start, end, step_size, now)
    prior = load_prior_state(con, span_start - step_size)
    inputs = load_window_inputs(con, span_start, span_end, rules, step_size, settings.config.alerts.min_market_share,
                                now, ZoneInfo(settings.config.density.local_timezone))
    snapshots, transitions = run_windows(prior, inputs, rules)
    state_rows = [_state_row(window.window_start, level, place_id, state, run_id)
                  for window, snapshot in zip(inputs, snapshots) for (level, place_id), state in sorted(snapshot.items())]
    evaluation_rows = [_evaluation_row(window, rules, run_id) for window in inputs]
    retracted, alerts_retracted = _replace_range(con, settings, span_start, span_end, state_rows, evaluation_rows,
                                                 transitions, run_id, code_version)
    return _summary(inputs, snapshots, transitions, retracted, alerts_retracted, (start, end), (span_start, span_end))


def _summary(inputs: list[WindowInput], snapshots: list, transitions: list, retracted: int, alerts_retracted: int,
             requested: tuple[datetime, datetime], span: tuple[datetime, datetime]) -> dict[str, Any]:
    skipped = [window for window in inputs if not window.evaluated]
    reasons: dict[str, int] = {}
    for window in skipped:
        kind = (window.reason or "").split(":")[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    counts = {kind: sum(1 for t in transitions if t.transition == kind) for kind in ("opened", "escalated", "closed")}
    return {
        "windows": len(inputs),
        "windows_evaluated": len(inputs) - len(skipped),
        "windows_not_evaluated": len(skipped),
        "windows_not_evaluated_by_reason": reasons,
        "windows_skipped_no_baseline": reasons.get(NO_BASELINE.split(":")[0], 0),
        "skipped_windows": [window.window_start.isoformat() for window in skipped][:20],
        "places_observed": sum(len(window.observations) for window in inputs if window.evaluated),
        "transitions_opened": counts["opened"],
        "transitions_escalated": counts["escalated"],
        "transitions_closed": counts["closed"],
        "transitions_retracted": retracted,
        "alerts_retracted": alerts_retracted,
        "open_alerts_after_range": sum(1 for state in (snapshots[-1] if snapshots else {}).values() if state.alert_id),
        "windows_carried_forward": int((span[1] - requested[1]) / (inputs[1].window_start - inputs[0].window_start))
        if len(inputs) > 1 else 0,
        "span_start": span[0].isoformat(),
        "span_end": span[1].isoformat(),
    }
