"""Per-place alert state machine, pure (no I/O).

A streak of condition windows opens an alert (``opened``), a higher severity band escalates it
(``escalated``), ``close_after`` windows without the condition close it (``closed``,
hysteresis), then a cooldown blocks the place for a while. ``alert_id`` is a hash of level,
place and opened window, so a rerun gives the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Iterable



from crowd_platform.alerts.rules import AlertRules, Observation, Score, score


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
    evaluated: bool  # False: no baseline, or the window's data incomplete; state carried over unchanged
    observations: dict[tuple[str, str], Observation]
    reason: str | None = None  # why a window is not evaluated (alert_evaluations.reason)


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
