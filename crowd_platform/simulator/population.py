"""Synthetic subscribers (home, work, a third place, operator, habits) and their daily plans.

Subscribers are compact numpy arrays (about 70 bytes each), never events: events are generated
window by window from these arrays (events.py). All randomness comes from numpy generators
seeded with (seed, purpose[, day]), so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import holidays
import numpy as np

from crowd_platform.simulator.world import POINTS_PER_KELURAHAN, World

# ---- behaviour parameters (documented in docs/simulator.md) ----
COMMUTER_SHARE = 0.55  # subscribers with a workplace away from home
LEAVE_HOME_MEAN_H, LEAVE_HOME_SD_H = 7.0, 0.8  # local time
WORK_HOURS_MEAN, WORK_HOURS_SD = 9.0, 0.75
COMMUTE_SPEED_KMH = 18.0  # Jakarta traffic, door to door
COMMUTE_FIXED_H = 0.15
WORKS_ON_WORKING_DAY = 0.93
WORKS_ON_DAY_OFF = 0.07
OUTING_WORKING_DAY = 0.25  # non-commuters running errands
OUTING_DAY_OFF = 0.35  # weekends and public holidays: most people stay home
POINT_JITTER_M = 40.0

# Stationary places; anything else (commuting, gathering) needs a nearest-cell query.
HOME, WORK, THIRD, MOVING = 0, 1, 2, 3

_indonesian_holidays = holidays.country_holidays("ID")


def is_day_off(day: date) -> bool:
    return day.weekday() >= 5 or day in _indonesian_holidays


@dataclass
class Subscribers:
    count: int
    operators: list[str]  # operator code -> name (every operator with a network)
    operator_of: np.ndarray  # int8
    home_kelurahan: np.ndarray  # int16 row in World.kelurahan
    home_xy: np.ndarray  # float32 (n, 2)
    work_xy: np.ndarray
    third_xy: np.ndarray
    commuter: np.ndarray  # bool
    leave_home_h: np.ndarray  # float32, local hours
    work_hours: np.ndarray
    commute_h: np.ndarray
    activity: np.ndarray  # float32 personal event-rate multiplier, mean 1
    lu_period_s: np.ndarray  # int32 periodic location update timer
    lu_phase_s: np.ndarray  # int32
    place_cell: np.ndarray  # int32 (n, 3): nearest own-operator cell at home, work, third place
    place_kelurahan: np.ndarray  # int16 (n, 3): World.kelurahan row of home, work, third place


def _points(world: World, rng: np.random.Generator, kelurahan: np.ndarray) -> np.ndarray:
    slot = rng.integers(0, POINTS_PER_KELURAHAN, len(kelurahan))
    jitter = rng.normal(0.0, POINT_JITTER_M, (len(kelurahan), 2))
    return (world.points[kelurahan, slot] + jitter).astype(np.float32)


def make_subscribers(world: World, count: int, seed: int) -> Subscribers:
    rng = np.random.default_rng([seed, 1])
    operators = sorted(world.networks)
    shares = np.array([world.market_share[operator] for operator in operators], dtype=float)
    operator_of = rng.choice(len(operators), size=count, p=shares / shares.sum()).astype(np.int8)
    n_kelurahan = len(world.population_weight)
    home_kelurahan = rng.choice(n_kelurahan, size=count, p=world.population_weight).astype(np.int16)
    work_kelurahan = rng.choice(n_kelurahan, size=count, p=world.job_weight)
    # Third places (markets, malls, relatives) follow both residents and jobs.
    third_weight = 0.5 * world.population_weight + 0.5 * world.job_weight
    third_kelurahan = rng.choice(n_kelurahan, size=count, p=third_weight / third_weight.sum())
    return _complete(world, rng, operators, operator_of, home_kelurahan, work_kelurahan, third_kelurahan)


def _complete(world: World, rng: np.random.Generator, operators: list[str], operator_of: np.ndarray,
              home_kelurahan: np.ndarray, work_kelurahan: np.ndarray, third_kelurahan: np.ndarray,
              commuter: np.ndarray | None = None) -> Subscribers:
    """Points, habits and place cells for subscribers whose operator and kelurahan are drawn.

    The draw order is the one of the original single function (byte-identical default runs);
    ``commuter`` is drawn here unless given (area populations draw it up front to select people).
    """
    count = len(operator_of)
    home_xy = _points(world, rng, home_kelurahan)
    work_xy = _points(world, rng, work_kelurahan)
    third_xy = _points(world, rng, third_kelurahan)
    if commuter is None:
        commuter = rng.random(count) < COMMUTER_SHARE
    leave = np.clip(rng.normal(LEAVE_HOME_MEAN_H, LEAVE_HOME_SD_H, count), 4.5, 10.5)
    hours = np.clip(rng.normal(WORK_HOURS_MEAN, WORK_HOURS_SD, count), 6.0, 12.0)
    distance_km = np.hypot(*(work_xy - home_xy).T) / 1000.0
    commute = np.clip(COMMUTE_FIXED_H + distance_km / COMMUTE_SPEED_KMH, 0.1, 2.5)
    # Log-normal with mean 1: a few heavy users, many light ones.
    activity = rng.lognormal(mean=-0.32, sigma=0.8, size=count)
    lu_period = rng.integers(30 * 60, 60 * 60 + 1, count)
    lu_phase = (rng.random(count) * lu_period).astype(np.int32)
    place_cell = np.zeros((count, 3), dtype=np.int32)
    for code, operator in enumerate(operators):
        mask = operator_of == code
        network = world.networks[operator]
        for place, xy in enumerate((home_xy, work_xy, third_xy)):
            place_cell[mask, place] = network.nearest(xy[mask])
    return Subscribers(
        count=count,
        operators=operators,
        operator_of=operator_of,
        home_kelurahan=home_kelurahan.astype(np.int16),
        home_xy=home_xy,
        work_xy=work_xy,
        third_xy=third_xy,
        commuter=commuter,
        leave_home_h=leave.astype(np.float32),
        work_hours=hours.astype(np.float32),
        commute_h=commute.astype(np.float32),
        activity=activity.astype(np.float32),
        lu_period_s=lu_period.astype(np.int32),
        lu_phase_s=lu_phase,
        place_cell=place_cell,
        place_kelurahan=np.stack([home_kelurahan, work_kelurahan, third_kelurahan], axis=1).astype(np.int16),
    )


# Subscribers drawn per chunk when a full-scale population is filtered to an area.
AREA_CHUNK = 1_000_000


def make_area_subscribers(world: World, total_sims: int, seed: int, area: np.ndarray,
                          visitors: bool = False) -> tuple[Subscribers, dict[str, int]]:
    """One subscriber per real SIM of Jakarta, keeping only those who belong to an area.

    ``total_sims`` SIMs are drawn in chunks exactly like :func:`make_subscribers` would place
    them (operator, home, work, third place by the same weights; commuter flag); a SIM is kept
    when its home is in ``area`` (bool per kelurahan row), or it commutes to a workplace there,
    or (``visitors``) its third place (markets, malls, relatives) is there. Everyone else never sets
    foot in the area and is not generated. Third-place-only SIMs are counted but left out by default:
    they are 40 % of the SIMs tied to a central block but only the ~13 % of them making an outing
    that day are there, for 1-4 hours (a few per cent of the block's daytime presence), at the cost
    of generating all their events. Returns the subscribers and counts per reason.
    """
    operators = sorted(world.networks)
    shares = np.array([world.market_share[operator] for operator in operators], dtype=float)
    n_kelurahan = len(world.population_weight)
    third_weight = 0.5 * world.population_weight + 0.5 * world.job_weight
    third_weight = third_weight / third_weight.sum()
    parts: dict[str, list[np.ndarray]] = {"operator": [], "home": [], "work": [], "third": [], "commuter": []}
    counts = {"sims_drawn": int(total_sims), "kept": 0, "home_in_area": 0, "work_in_area_only": 0,
              "third_place_in_area_only": 0, "third_place_only_simulated": int(visitors)}
    for chunk, first in enumerate(range(0, total_sims, AREA_CHUNK)):
        size = min(AREA_CHUNK, total_sims - first)
        rng = np.random.default_rng([seed, 8, chunk])
        operator_of = rng.choice(len(operators), size=size, p=shares / shares.sum()).astype(np.int8)
        home = rng.choice(n_kelurahan, size=size, p=world.population_weight)
        work = rng.choice(n_kelurahan, size=size, p=world.job_weight)
        third = rng.choice(n_kelurahan, size=size, p=third_weight)
        commuter = rng.random(size) < COMMUTER_SHARE
        at_home = area[home]
        at_work = commuter & area[work] & ~at_home
        at_third = area[third] & ~at_home & ~at_work
        keep = at_home | at_work | (at_third if visitors else False)
        counts["home_in_area"] += int(at_home.sum())
        counts["work_in_area_only"] += int(at_work.sum())
        counts["third_place_in_area_only"] += int(at_third.sum())
        for name, values in (("operator", operator_of), ("home", home), ("work", work), ("third", third),
                             ("commuter", commuter)):
            parts[name].append(values[keep])
    joined = {name: np.concatenate(values) for name, values in parts.items()}
    counts["kept"] = int(len(joined["operator"]))
    rng = np.random.default_rng([seed, 9])
    subscribers = _complete(world, rng, operators, joined["operator"], joined["home"], joined["work"], joined["third"],
                            commuter=joined["commuter"])
    return subscribers, counts


@dataclass
class DayPlan:
    """Where each subscriber is during one local (Asia/Jakarta) day, in local hours."""

    day: date
    day_off: bool
    leave: np.ndarray  # NaN when not commuting today
    arrive: np.ndarray
    depart: np.ndarray
    back: np.ndarray
    outing_start: np.ndarray  # NaN when no outing today
    outing_end: np.ndarray


def make_day_plan(subscribers: Subscribers, day: date, seed: int) -> DayPlan:
    count = subscribers.count
    rng = np.random.default_rng([seed, 2, day.toordinal()])
    day_off = is_day_off(day)
    works = subscribers.commuter & (rng.random(count) < (WORKS_ON_DAY_OFF if day_off else WORKS_ON_WORKING_DAY))
    leave = subscribers.leave_home_h + rng.normal(0.0, 0.25, count)
    arrive = leave + subscribers.commute_h
    depart = arrive + subscribers.work_hours + rng.normal(0.0, 0.3, count)
    back = depart + subscribers.commute_h * 1.2  # the evening rush is slower
    nan = np.float32(np.nan)
    outing_p = OUTING_DAY_OFF if day_off else OUTING_WORKING_DAY
    outing = ~works & (rng.random(count) < outing_p)
    start = rng.uniform(8.5, 18.0, count)
    end = start + rng.uniform(1.0, 4.0, count)
    return DayPlan(
        day=day,
        day_off=day_off,
        leave=np.where(works, leave, nan).astype(np.float32),
        arrive=np.where(works, arrive, nan).astype(np.float32),
        depart=np.where(works, depart, nan).astype(np.float32),
        back=np.where(works, back, nan).astype(np.float32),
        outing_start=np.where(outing, start, nan).astype(np.float32),
        outing_end=np.where(outing, end, nan).astype(np.float32),
    )


def place_at(plan: DayPlan, who: np.ndarray, local_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(place code, fraction of the way from home to work) for subscribers at local hours.

    Comparisons with NaN are False, so people without a commute or outing stay HOME.
    """
    leave, arrive = plan.leave[who], plan.arrive[who]
    depart, back = plan.depart[who], plan.back[who]
    place = np.full(len(who), HOME, dtype=np.int8)
    fraction = np.zeros(len(who), dtype=np.float32)
    at_work = (local_h >= arrive) & (local_h < depart)
    going = (local_h >= leave) & (local_h < arrive)
    coming = (local_h >= depart) & (local_h < back)
    place[at_work] = WORK
    place[going | coming] = MOVING
    fraction[going] = ((local_h - leave) / (arrive - leave))[going]
    fraction[coming] = (1.0 - (local_h - depart) / (back - depart))[coming]
    outing = (local_h >= plan.outing_start[who]) & (local_h < plan.outing_end[who])
    place[outing] = THIRD
    return place, fraction

