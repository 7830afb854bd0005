"""Injected gatherings: extra subscribers from the surrounding area at one place for a while.

A gathering is what the platform should find. Its ground truth (place, time, size in
subscribers and in people) goes to ground_truth.json so that tests and the demo can check the
alerts against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from crowd_platform.simulator.population import HOME, MOVING, THIRD, WORK, Subscribers, make_day_plan, place_at
from crowd_platform.simulator.world import World
from crowd_platform.common.timeutil import parse_utc

LOCAL_OFFSET = timedelta(hours=7)  # Asia/Jakarta, no daylight saving
WINDOW = timedelta(minutes=15)
# Participants stand within ~this many metres of the place: one or two cell sites' area.
GATHERING_SPREAD_M = 120.0
# Extra data sessions per participant-hour (photos, video calls): crowds use their phones.
GATHERING_EXTRA_DATA_PER_H = 2.0
# Default size: a share of all subscribers, but never so few that a test-scale run cannot see it.
DEFAULT_SHARE_RANGE = (0.06, 0.10)
DEFAULT_MIN_SUBSCRIBERS = 300

# Real places in Jakarta with the kind of crowd each draws and when (local time).
DEFAULT_SITES: tuple[dict[str, Any], ...] = (
    {"site": "Masjid Istiqlal", "kind": "friday prayer", "lon": 106.8313, "lat": -6.1702, "local_start_h": 11.5, "hours": 2.0, "weekday": 4},
    {"site": "Pasar Tanah Abang", "kind": "market", "lon": 106.8133, "lat": -6.1879, "local_start_h": 9.0, "hours": 3.0, "weekday": None},
    {"site": "Gelora Bung Karno", "kind": "stadium event", "lon": 106.8021, "lat": -6.2185, "local_start_h": 19.0, "hours": 3.0, "weekday": None},
)


@dataclass
class ActiveGathering:
    """A gathering resolved against the simulated population."""

    record: dict[str, Any]
    start: datetime
    end: datetime
    xy: np.ndarray  # (2,) metres
    participants: np.ndarray  # sorted subscriber indices
    kelurahan_row: int = -1  # World.kelurahan row of the place


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    return parse_utc(value, what="gathering time")


def default_gatherings(windows: list[datetime], subscribers: int, seed: int) -> list[dict[str, Any]]:
    """One gathering per default site, placed inside the simulated windows.

    Sites keep their usual local time when it is simulated (Friday prayer on a Friday); when
    --hours leaves it out, the gathering moves into the simulated hours of its day. The first
    day is avoided when there are others, so that it can serve as a baseline.
    """
    if not windows:
        return []
    rng = np.random.default_rng([seed, 3])
    by_day: dict[date, list[datetime]] = {}
    for window in sorted(windows):
        by_day.setdefault(window.date(), []).append(window)
    days = sorted(by_day)
    candidate_days = days[1:] or days
    chosen_days: list[date] = []
    for site in DEFAULT_SITES:
        preferred = [day for day in candidate_days if site["weekday"] is None or day.weekday() == site["weekday"]]
        pool = [day for day in (preferred or candidate_days) if day not in chosen_days] or (preferred or candidate_days)
        chosen_days.append(pool[int(rng.integers(0, len(pool)))])
    gatherings: list[dict[str, Any]] = []
    placed: list[tuple[datetime, datetime]] = []
    for number, (site, day) in enumerate(zip(DEFAULT_SITES, chosen_days), start=1):
        day_windows = by_day[day]
        first, last_end = day_windows[0], day_windows[-1] + WINDOW
        # Gatherings sharing a day share its simulated hours instead of piling up at once.
        sharing = chosen_days.count(day)
        duration = min(timedelta(hours=site["hours"]), max(WINDOW, (last_end - first) / sharing))
        duration = timedelta(minutes=15 * int(duration / WINDOW))
        preferred_start = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=site["local_start_h"]) - LOCAL_OFFSET
        candidates = [preferred_start] + [window for window in day_windows if window + duration <= last_end]
        start = candidates[-1]
        for candidate in candidates:
            fits = first <= candidate and candidate + duration <= last_end
            free = all(candidate >= end or candidate + duration <= begin for begin, end in placed)
            if fits and free:
                start = candidate
                break
        placed.append((start, start + duration))
        share = rng.uniform(*DEFAULT_SHARE_RANGE)
        extra = max(int(round(subscribers * share)), min(DEFAULT_MIN_SUBSCRIBERS, subscribers // 5))
        gatherings.append(
            {
                "id": f"g{number}-{site['site'].lower().replace(' ', '-')}",
                "site": site["site"],
                "kind": site["kind"],
                "lon": site["lon"],
                "lat": site["lat"],
                "start": _iso(start),
                "end": _iso(start + duration),
                "extra_subscribers": extra,
            }
        )
    return gatherings


def load_gatherings(path: Path) -> list[dict[str, Any]]:
    """Gatherings from a JSON file: a list, or {"gatherings": [...]} (a ground_truth.json)."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    items = document.get("gatherings", []) if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ValueError("expected a list of gatherings")
    return items


def _gathering_place(spec: dict[str, Any], number: int, world: World) -> tuple[int, float, float]:
    """(kelurahan row, lon, lat) of a spec: its lon/lat, or the centre of a kelurahan given by code or name."""
    kelurahan = world.kelurahan
    if "lon" in spec and "lat" in spec:
        lon, lat = float(spec["lon"]), float(spec["lat"])
        return world.locate(lon, lat), lon, lat
    if not any(name in spec for name in ("kelurahan_code", "kelurahan", "kelurahan_name")):
        raise ValueError(f"gathering {number}: needs lon/lat, kelurahan_code or kelurahan")
    # A kelurahan by BPS code or by name (case-insensitive); the gathering is at its centre.
    wanted = str(spec.get("kelurahan_code") or spec.get("kelurahan") or spec.get("kelurahan_name")).strip()
    matches = np.flatnonzero(kelurahan["code"].to_numpy() == wanted)
    if not len(matches):
        matches = np.flatnonzero(kelurahan["name"].str.to_lowercase().to_numpy() == wanted.lower())
    if len(matches) != 1:
        problem = "unknown" if not len(matches) else "ambiguous (use kelurahan_code)"
        raise ValueError(f"gathering {number}: kelurahan {wanted!r} is {problem}")
    row = int(matches[0])
    lon, lat = world.to_lonlat.transform(kelurahan["x"][row], kelurahan["y"][row])
    return row, lon, lat


def _gathering_period(spec: dict[str, Any], number: int) -> tuple[datetime, datetime]:
    """(start, end) of a spec: start and end, or start and duration_minutes."""
    start = _parse_time(spec["start"])
    end = _parse_time(spec["end"]) if "end" in spec else start + timedelta(minutes=float(spec["duration_minutes"]))
    if end <= start:
        raise ValueError(f"gathering {number}: end is not after start")
    return start, end


def _requested_size(spec: dict[str, Any], number: int, population: int) -> int:
    """Extra subscribers asked for (``extra_subscribers`` or ``size``), at most the whole population."""
    extra = int(spec.get("extra_subscribers", spec.get("size", 0)))
    if extra <= 0:
        raise ValueError(f"gathering {number}: extra_subscribers must be positive")
    return min(extra, population)


def _pick_participants(
    subscribers: Subscribers, x: float, y: float, start: datetime, end: datetime, extra: int,
    earlier: list[ActiveGathering], rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """Sorted participants and the radius (m) of the homes they come from.

    Participants come from the surrounding area: a random draw among the 3x nearest homes. Nobody
    is at two gatherings at once: people busy at an overlapping earlier one are not eligible.
    (``x``, ``y``) stay Python floats: distances keep the dtype of the home coordinates.
    """
    distance = np.hypot(subscribers.home_xy[:, 0] - x, subscribers.home_xy[:, 1] - y)
    busy = np.zeros(subscribers.count, dtype=bool)
    for other in earlier:
        if other.start < end and other.end > start:
            busy[other.participants] = True
    distance = np.where(busy, np.inf, distance)
    extra = min(extra, int((~busy).sum()))
    nearest = np.argsort(distance, kind="stable")[: min(int((~busy).sum()), 3 * extra)]
    participants = np.sort(rng.choice(nearest, size=extra, replace=False))
    origin_radius = int(round(float(distance[nearest].max()))) if len(nearest) else 0
    return participants, origin_radius


def resolve_gatherings(
    specs: list[dict[str, Any]], world: World, subscribers: Subscribers, seed: int,
    sampling_fraction: float | None = None,
) -> list[ActiveGathering]:
    """Place each gathering, pick its participants among the nearest homes, fill in ground truth.

    A spec needs start, end (or duration_minutes), extra_subscribers, and either lon/lat or a
    kelurahan (``kelurahan_code``, or ``kelurahan`` as code or name).
    """
    kelurahan = world.kelurahan
    # Simulated subscribers per real person: a sample of Jakarta, or SIMs per person at full scale.
    if sampling_fraction is None:
        sampling_fraction = subscribers.count / world.total_population
    resolved: list[ActiveGathering] = []
    for number, spec in enumerate(specs, start=1):
        row, lon, lat = _gathering_place(spec, number, world)
        start, end = _gathering_period(spec, number)
        extra = _requested_size(spec, number, subscribers.count)
        x, y = world.to_xy.transform(lon, lat)
        participants, origin_radius = _pick_participants(subscribers, x, y, start, end, extra, resolved,
                                                         np.random.default_rng([seed, 4, number]))
        extra = len(participants)  # fewer when people are busy at an overlapping gathering
        record = {
            "id": str(spec.get("id") or f"g{number}"),
            "site": spec.get("site"),
            "kind": spec.get("kind"),
            "kelurahan_code": kelurahan["code"][row],
            "kelurahan_name": kelurahan["name"][row],
            "kecamatan_code": kelurahan["kec_code"][row],
            "kecamatan_name": kelurahan["kec_name"][row],
            "lon": round(lon, 6),
            "lat": round(lat, 6),
            "start": _iso(start),
            "end": _iso(end),
            "extra_subscribers": extra,
            "extra_subscribers_by_operator": {
                operator: int((subscribers.operator_of[participants] == code).sum())
                for code, operator in enumerate(subscribers.operators)
            },
            # Every operator's count / (share x sampling fraction) estimates the same crowd; over
            # all operators (shares sum to 1) that is extra / sampling fraction.
            "people_equivalent": int(round(extra / sampling_fraction)),
            "origin_radius_m": origin_radius,
        }
        resolved.append(ActiveGathering(record=record, start=start, end=end, xy=np.array([x, y]), participants=participants,
                                        kelurahan_row=row))
    return resolved


def record_people_added(gatherings: list[ActiveGathering], subscribers: Subscribers, seed: int,
                        sampling_fraction: float) -> None:
    """Ground truth in the issue's terms: people a gathering ADDS to its kelurahan.

    Participants are drawn among the nearest homes, so some of them would have been in the same
    kelurahan anyway (at home, at work, on an outing there): they do not change its count. Per
    15-minute window of the gathering, a participant is added when, without the gathering, the
    day plan would have put them elsewhere (home, work or third place in another kelurahan; on
    the road between two places neither of which is in it). ``people_added`` is the minimum over
    the windows the gathering fully covers (what it sustains), in people (/ sampling fraction).
    """
    plans: dict[date, Any] = {}
    for gathering in gatherings:
        who = gathering.participants
        kelurahan_of = subscribers.place_kelurahan[who]
        row = gathering.kelurahan_row
        by_window = []
        window = gathering.start - timedelta(minutes=gathering.start.minute % 15, seconds=gathering.start.second,
                                             microseconds=gathering.start.microsecond)
        while window < gathering.end:
            lo, hi = max(window, gathering.start), min(window + WINDOW, gathering.end)
            local = lo + (hi - lo) / 2 + LOCAL_OFFSET
            if local.date() not in plans:
                plans[local.date()] = make_day_plan(subscribers, local.date(), seed)
            hour = np.full(len(who), local.hour + local.minute / 60.0 + local.second / 3600.0, dtype=np.float32)
            place, _ = place_at(plans[local.date()], who, hour)
            inside = np.zeros(len(who), dtype=bool)
            for code in (HOME, WORK, THIRD):
                inside |= (place == code) & (kelurahan_of[:, code] == row)
            inside |= (place == MOVING) & ((kelurahan_of[:, HOME] == row) | (kelurahan_of[:, WORK] == row))
            by_window.append({"window_start": _iso(window), "full": lo == window and hi == window + WINDOW,
                              "subscribers_added": int((~inside).sum())})
            window += WINDOW
        sustained = [entry["subscribers_added"] for entry in by_window if entry["full"]] or \
                    [entry["subscribers_added"] for entry in by_window]
        gathering.record["subscribers_added_by_window"] = [
            {"window_start": entry["window_start"], "subscribers_added": entry["subscribers_added"]} for entry in by_window]
        gathering.record["people_added"] = int(round(min(sustained) / sampling_fraction)) if sustained else 0
