"""Crowd alerts: anomaly rule, per-place state machine and the warehouse engine.

The rule compares a window's value at a place with its baseline (same weekday and time of
day): robust z, ratio and absolute excess must all pass (config/alert_rules.yaml). The state
machine per place: a streak of condition windows opens an alert (``opened``), a higher
severity band escalates it (``escalated``), ``close_after`` windows without the condition
close it (``closed``, hysteresis), then a cooldown blocks the place for a while.

The pure part (:func:`score`, :func:`step`, :func:`run_windows`) has no I/O. The engine
(:func:`evaluate_range`) reads the state after the window before the range from the
warehouse (``alert_place_state``), processes windows in order and replaces the range's
rows, so running windows one by one or as a range gives the same rows, and a rerun
gives the same alert ids (``alert_id`` = hash of level, place and opened window).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

import yaml

from crowd_platform.common.crashpoints import crash_point
from crowd_platform.common.warehouse import transaction

MAD_TO_SIGMA = 1.4826  # MAD * 1.4826 estimates the standard deviation of a normal variable
SITE_LEVEL = "site"
TRANSITION_AUDIT_ACTIONS = {"opened": "alert_opened", "escalated": "alert_escalated", "closed": "alert_closed"}


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class SeverityBand:
    severity: int
    ratio: float
    robust_z: float


@dataclass(frozen=True)
class AlertRules:
    levels: tuple[str, ...] = (SITE_LEVEL, "kelurahan", "kecamatan")
    robust_z_min: float = 3.0
    # Per level like min_excess ({"default": x} when the YAML gives one number).
    ratio_min: dict[str, float] = field(default_factory=lambda: {"default": 1.5})
    mad_floor_fraction: float = 0.05
    mad_floor_min: float = 1.0
    # Counting-noise floor: a Poisson count's MAD is about 0.6745 * sqrt(mean); 0 = off.
    mad_floor_counting: float = 0.0
    min_excess: dict[str, float] = field(default_factory=lambda: {"default": 1000.0})
    min_consecutive: int = 2
    close_after: int = 2
    cooldown: int = 4
    bands: tuple[SeverityBand, ...] = (SeverityBand(1, 1.5, 3.0), SeverityBand(2, 2.0, 6.0), SeverityBand(3, 3.0, 12.0))

    def min_excess_for(self, level: str) -> float:
        return float(self.min_excess.get(level, self.min_excess.get("default", 0.0)))

    def ratio_min_for(self, level: str) -> float:
        return float(self.ratio_min.get(level, self.ratio_min.get("default", 1.0)))

    def spread(self, median: float, mad: float) -> float:
        """The MAD used for the robust z: never below the floors, so a flat history cannot make a tiny change huge."""
        return max(mad, self.mad_floor_fraction * median, self.mad_floor_counting * math.sqrt(max(median, 0.0)),
                   self.mad_floor_min)

    def as_dict(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels), "robust_z_min": self.robust_z_min, "ratio_min": dict(self.ratio_min),
            "mad_floor_fraction": self.mad_floor_fraction, "mad_floor_min": self.mad_floor_min,
            "mad_floor_counting": self.mad_floor_counting,
            "min_excess": dict(self.min_excess), "min_consecutive": self.min_consecutive,
            "close_after": self.close_after, "cooldown": self.cooldown,
        }


def _per_level(value: Any) -> dict[str, float]:
    """A threshold given as one number (every level) or as {level: number, default: number}."""
    if isinstance(value, dict):
        return {str(level): float(number) for level, number in value.items()}
    return {"default": float(value)}


def load_rules(path: Path) -> AlertRules:
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    condition = document.get("condition") or {}
    machine = document.get("state_machine") or {}
    defaults = AlertRules()
    bands = tuple(
        SeverityBand(int(band["severity"]), float(band["ratio"]), float(band["robust_z"]))
        for band in document.get("severity_bands") or []
    ) or defaults.bands
    rules = AlertRules(
        levels=tuple(document.get("levels") or defaults.levels),
        robust_z_min=float(condition.get("robust_z_min", defaults.robust_z_min)),
        ratio_min=_per_level(condition.get("ratio_min", defaults.ratio_min)),
        mad_floor_fraction=float(condition.get("mad_floor_fraction", defaults.mad_floor_fraction)),
        mad_floor_min=float(condition.get("mad_floor_min", defaults.mad_floor_min)),
        mad_floor_counting=float(condition.get("mad_floor_counting", defaults.mad_floor_counting)),
        min_excess=_per_level(condition.get("min_excess") or {"default": 1000}),
        min_consecutive=int(machine.get("min_consecutive_windows", defaults.min_consecutive)),
        close_after=int(machine.get("close_after_windows", defaults.close_after)),
        cooldown=int(machine.get("cooldown_windows", defaults.cooldown)),
        bands=tuple(sorted(bands, key=lambda band: band.severity)),
    )
    if rules.min_consecutive < 1 or rules.close_after < 1 or rules.cooldown < 0:
        raise ValueError(f"{path.name}: min_consecutive_windows and close_after_windows must be >= 1, cooldown >= 0")
    return rules


def rules_from_settings(settings: Any) -> AlertRules:
    # CROWD_ALERT_RULES swaps the rules file for runs on a sampled population (demo, tests),
    # where absolute people thresholds calibrated for full-scale data cannot be reached.
    return load_rules(settings.alert_rules_file)


# --------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class Observation:
    """A place's value in one window and its baseline."""

    observed: float
    median: float
    mad: float
    drop_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Score:
    observed: float
    median: float
    mad: float
    ratio: float
    robust_z: float
    excess: float
    condition: bool
    severity: int


def score(observation: Observation, level: str, rules: AlertRules) -> Score:
    median = max(float(observation.median or 0.0), 0.0)
    mad = max(float(observation.mad or 0.0), 0.0)
    observed = float(observation.observed)
    # A flat history (MAD 0) would make any change infinite: floor the spread.
    spread = rules.spread(median, mad)
    robust_z = (observed - median) / (MAD_TO_SIGMA * spread)
    ratio = observed / max(median, 1.0)
    excess = observed - median
    condition = (robust_z >= rules.robust_z_min and ratio >= rules.ratio_min_for(level)
                 and excess >= rules.min_excess_for(level))
    severity = 0
    if condition:
        severity = 1
        for band in rules.bands:
            if ratio >= band.ratio and robust_z >= band.robust_z:
                severity = max(severity, band.severity)
    return Score(observed, median, mad, ratio, robust_z, excess, condition, severity)


# --------------------------------------------------------------------------- state machine
@dataclass(frozen=True)
class PlaceState:
    streak: int = 0
    quiet: int = 0
    cooldown_left: int = 0
    alert_id: str | None = None
    severity: int = 0
    opened_window: datetime | None = None
    alert_windows: int = 0
    evidence: Score | None = None
    drop_ids: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.streak == 0 and self.quiet == 0 and self.cooldown_left == 0 and self.alert_id is None


DEFAULT_STATE = PlaceState()


@dataclass(frozen=True)
class Transition:
    alert_id: str
    window_start: datetime
    transition: str  # opened | escalated | closed
    level: str
    place_id: str
    severity: int
    observed: float | None
    ratio: float | None
    robust_z: float | None


def alert_id_for(level: str, place_id: str, opened_window: datetime) -> str:
    stamp = opened_window.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    return hashlib.sha256(f"{level}|{place_id}|{stamp}".encode()).hexdigest()[:32]


def _merge_ids(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(first) | set(second)))


def step(
    previous: PlaceState,
    current: Score | None,
    window: datetime,
    level: str,
    place_id: str,
    rules: AlertRules,
    drop_ids: tuple[str, ...] = (),
) -> tuple[PlaceState, list[Transition]]:
    """The place's state after ``window`` (``current`` None = no value or no baseline row)."""
    held = bool(current and current.condition)
    blocked = previous.cooldown_left > 0
    cooldown_left = max(previous.cooldown_left - 1, 0)
    streak = previous.streak + 1 if held else 0
    transitions: list[Transition] = []

    if previous.alert_id is not None:
        if held:
            state = replace(
                previous, streak=streak, quiet=0, cooldown_left=0, alert_windows=previous.alert_windows + 1,
                evidence=current, drop_ids=_merge_ids(previous.drop_ids, drop_ids),
            )
            if current.severity > previous.severity:
                state = replace(state, severity=current.severity)
                transitions.append(Transition(previous.alert_id, window, "escalated", level, place_id,
                                              current.severity, current.observed, current.ratio, current.robust_z))
            return state, transitions
        quiet = previous.quiet + 1
        if quiet >= rules.close_after:
            # The closing window's own values (None when the place had no value or baseline row).
            transitions.append(Transition(previous.alert_id, window, "closed", level, place_id, previous.severity,
                                          current.observed if current else None, current.ratio if current else None,
                                          current.robust_z if current else None))
            return PlaceState(cooldown_left=rules.cooldown), transitions
        return replace(previous, streak=0, quiet=quiet), transitions

    if not held:
        return PlaceState(cooldown_left=cooldown_left), transitions
    # Drops of every window in the streak fed the decision to open.
    streak_drops = _merge_ids(previous.drop_ids if previous.streak else (), drop_ids)
    if streak >= rules.min_consecutive and not blocked:
        alert_id = alert_id_for(level, place_id, window)
        transitions.append(Transition(alert_id, window, "opened", level, place_id, current.severity,
                                      current.observed, current.ratio, current.robust_z))
        return PlaceState(streak=streak, alert_id=alert_id, severity=current.severity, opened_window=window,
                          alert_windows=streak, evidence=current, drop_ids=streak_drops), transitions
    return PlaceState(streak=streak, cooldown_left=cooldown_left, evidence=current, drop_ids=streak_drops), transitions


@dataclass
class WindowInput:
    window_start: datetime
    evaluated: bool  # False: no baseline for the day, state carried over unchanged
    observations: dict[tuple[str, str], Observation]


def run_windows(
    prior: dict[tuple[str, str], PlaceState], windows: list[WindowInput], rules: AlertRules
) -> tuple[list[dict[tuple[str, str], PlaceState]], list[Transition]]:
    """Process windows in order; returns the (sparse) state after each window and all transitions."""
    states = {key: value for key, value in prior.items() if not value.is_default}
    snapshots: list[dict[tuple[str, str], PlaceState]] = []
    transitions: list[Transition] = []
    for window in sorted(windows, key=lambda item: item.window_start):
        if window.evaluated:
            following: dict[tuple[str, str], PlaceState] = {}
            for key in sorted(set(states) | set(window.observations)):
                level, place_id = key
                observation = window.observations.get(key)
                current = score(observation, level, rules) if observation else None
                state, happened = step(states.get(key, DEFAULT_STATE), current, window.window_start, level, place_id,
                                       rules, observation.drop_ids if observation else ())
                transitions.extend(happened)
                if not state.is_default:
                    following[key] = state
            states = following
        snapshots.append(dict(states))
    return snapshots, transitions


# --------------------------------------------------------------------------- warehouse engine
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
    from crowd_platform.common.warehouse import fetch_dicts

    rows = fetch_dicts(con, "SELECT * FROM alert_place_state WHERE window_start = ?", [window_before])
    return {(row["level"], row["place_id"]): _state_from_row(row) for row in rows}


def load_window_inputs(con: Any, start: datetime, end: datetime, rules: AlertRules, step_size: timedelta) -> list[WindowInput]:
    from crowd_platform.common.warehouse import read_sql

    district_levels = [level for level in rules.levels if level != SITE_LEVEL]
    rows = con.execute(read_sql("crowd_alerts_observations"),
                       {"start": start, "end": end, "levels": district_levels or ["<none>"],
                        "include_sites": SITE_LEVEL in rules.levels}).fetchall()
    days_with_baseline = {day for (day,) in con.execute(read_sql("crowd_alerts_baseline_days"),
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
    from crowd_platform.common.warehouse import fetch_dicts, read_sql

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
        place_name = con.execute(read_sql("crowd_alerts_place_name"),
                                 {"level": state["level"], "place_id": state["place_id"]}).fetchone()
        drop_ids = sorted(state["drop_ids"] or [])
        con.execute(
            "INSERT INTO crowd_alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [alert_id, state["level"], state["place_id"], place_name[0] if place_name else state["place_id"], status,
             state["severity"], state["opened_window"], state["window_start"], closed[-1] if closed else None,
             state["observed"], state["baseline_median"], state["baseline_mad"], state["ratio"], state["robust_z"],
             state["excess"], state["alert_windows"], drop_ids, _contract_versions(con, drop_ids), code_version,
             run_id, now],
        )


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
    from crowd_platform.common import audit

    step_size = _window_step(settings)
    prior = load_prior_state(con, start - step_size)
    inputs = load_window_inputs(con, start, end, rules, step_size)
    snapshots, transitions = run_windows(prior, inputs, rules)

    state_rows, evaluation_rows = [], []
    for window, snapshot in zip(inputs, snapshots):
        for (level, place_id), state in sorted(snapshot.items()):
            evidence = state.evidence
            state_rows.append([
                window.window_start, level, place_id, state.streak, state.quiet, state.cooldown_left, state.alert_id,
                state.severity, state.opened_window, state.alert_windows,
                evidence.observed if evidence else None, evidence.median if evidence else None,
                evidence.mad if evidence else None, evidence.ratio if evidence else None,
                evidence.robust_z if evidence else None, evidence.excess if evidence else None,
                list(state.drop_ids), run_id,
            ])
        conditions = sum(1 for key, observation in window.observations.items()
                         if window.evaluated and score(observation, key[0], rules).condition)
        evaluation_rows.append([window.window_start, window.evaluated,
                                None if window.evaluated else "no density_baseline for this day",
                                len(window.observations) if window.evaluated else 0, conditions, run_id])

    with transaction(con):
        previous = {(row[0], row[1].astimezone(timezone.utc), row[2]) for row in con.execute(
            "SELECT alert_id, window_start, transition FROM alert_transitions WHERE window_start >= ? AND window_start < ?",
            [start, end]).fetchall()}
        touched = {alert_id for (alert_id,) in con.execute(
            "SELECT DISTINCT alert_id FROM alert_place_state WHERE window_start >= ? AND window_start < ? "
            "AND alert_id IS NOT NULL", [start, end]).fetchall()} | {key[0] for key in previous}
        for table in ("alert_place_state", "alert_transitions", "alert_evaluations"):
            con.execute(f"DELETE FROM {table} WHERE window_start >= ? AND window_start < ?", [start, end])
        if state_rows:
            con.executemany("INSERT INTO alert_place_state VALUES (" + ", ".join(["?"] * 18) + ")", state_rows)
        con.executemany("INSERT INTO alert_evaluations VALUES (?, ?, ?, ?, ?, ?)", evaluation_rows)
        if transitions:
            con.executemany("INSERT INTO alert_transitions VALUES (?, ?, ?, ?, ?, ?, ?)", [
                [t.alert_id, t.window_start, t.transition, t.observed, t.ratio, t.robust_z, run_id] for t in transitions])
        current = {(t.alert_id, t.window_start, t.transition) for t in transitions}
        # Audit only what changed: a rerun that reproduces the same transitions adds nothing.
        for t in transitions:
            if (t.alert_id, t.window_start, t.transition) in previous:
                continue
            audit.append(con, TRANSITION_AUDIT_ACTIONS[t.transition], purpose=settings.purpose, object_kind="crowd_alert",
                         object_id=t.alert_id, run_id=run_id,
                         details={"level": t.level, "place_id": t.place_id, "window_start": t.window_start.isoformat(),
                                  "severity": t.severity, "ratio": t.ratio, "robust_z": t.robust_z,
                                  "code_version": code_version})
        for alert_id, window_start, kind in sorted(previous - current):
            audit.append(con, "alert_transition_retracted", purpose=settings.purpose, object_kind="crowd_alert",
                         object_id=alert_id, run_id=run_id,
                         details={"window_start": window_start.isoformat(), "transition": kind, "reason": "rerun"})
        _refresh_alert_rows(con, touched | {t.alert_id for t in transitions}, run_id, code_version)
        later = con.execute("SELECT count(*) FROM alert_evaluations WHERE window_start >= ?", [end]).fetchone()[0]
        crash_point("alerts_writing")

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
        "transitions_retracted": len(previous - current),
        "open_alerts_after_range": open_after,
        "later_windows_already_evaluated": later,
    }
