"""simulate(): the world, a sample of subscribers, the gatherings, then every window's drops
(through the fault plan) and ground_truth.json. Re-exported as ``crowd_platform.simulator.simulate``."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from crowd_platform.common import storage
from crowd_platform.common.contracts import contract_for
from crowd_platform.common.settings import Settings, get_settings
from crowd_platform.simulator import keys
from crowd_platform.simulator.drops import (
    MANIFEST_SUFFIX,
    _atomic_write,
    build_manifest,
    drop_file_name,
    write_drop,
)
from crowd_platform.simulator.events import WindowGenerator
from crowd_platform.simulator.faults import FAULT_TYPES, FaultPlan
from crowd_platform.simulator.gatherings import (
    ActiveGathering,
    default_gatherings,
    record_people_added,
    resolve_gatherings,
)
from crowd_platform.simulator.population import Subscribers, make_area_subscribers, make_subscribers
from crowd_platform.simulator.world import OperatorNetwork, World, build_world

__all__ = ["simulate", "simulated_windows", "FAULT_TYPES", "GROUND_TRUTH_FILE"]

GROUND_TRUTH_FILE = "ground_truth.json"
WINDOW = timedelta(minutes=15)


def simulated_windows(start: date, days: int, hours: tuple[int, int] | None = None, day_step: int = 1) -> list[datetime]:
    """Window starts (UTC) of the simulated period; ``hours`` keeps [from, to) UTC hours of each day.

    ``day_step`` 7 simulates ``days`` days one week apart (the same weekday: what a weekly
    baseline reads), 1 consecutive days.
    """
    windows = []
    for number in range(days):
        first = datetime.combine(start + timedelta(days=number * day_step), datetime.min.time(), tzinfo=timezone.utc)
        for step in range(24 * 4):
            window = first + step * WINDOW
            if hours is None or hours[0] <= window.hour < hours[1]:
                windows.append(window)
    return windows


def _write_cells_drop(landing: Path, settings, network: OperatorNetwork, window_start: datetime) -> Path:
    """The operator's cell list (cell_id, lon, lat, radio), once, before its first events drop."""
    operator = network.operator
    frame = network.cells_frame()
    window_end = window_start + WINDOW
    key_id = keys.key_id(operator, window_start.date())
    cells_contract = contract_for(settings.contracts_dir, operator, "cells")
    if cells_contract is not None:
        data_path, _ = write_drop(landing, cells_contract, frame, feed="cells", operator=operator,
                                  window_start=window_start, window_end=window_end, key_id=key_id, created_at=window_start)
        return data_path
    # No cells contract yet: a plain comma CSV (the common denominator), named like any drop.
    events_contract = network.contract
    payload = frame.write_csv().encode("utf-8")
    name = drop_file_name(operator, "cells", window_start, 1, events_contract).split(".")[0] + ".csv"
    data_path = landing / operator / name
    _atomic_write(data_path, payload)
    manifest = build_manifest(contract=events_contract, operator=operator, feed="cells", file_name=name, payload=payload,
                              row_count=frame.height, window_start=window_start, window_end=window_end, delivery=1,
                              key_id=key_id, created_at=window_start)
    _atomic_write(data_path.with_name(name + MANIFEST_SUFFIX), json.dumps(manifest, indent=1).encode())
    return data_path


def _area_mask(world, area: list[str]):
    """Kelurahan rows in the named kecamatan (names case-insensitive, or BPS kecamatan codes)."""
    import numpy as np

    names = world.kelurahan["kec_name"].str.to_lowercase().to_numpy()
    codes = world.kelurahan["kec_code"].to_numpy()
    mask = np.zeros(len(names), dtype=bool)
    for wanted in area:
        hit = (names == wanted.strip().lower()) | (codes == wanted.strip())
        if not hit.any():
            raise ValueError(f"unknown kecamatan {wanted!r} in area")
        mask |= hit
    return mask


@dataclass(frozen=True)
class _Run:
    """One simulate() call once its arguments are checked: where, what world, which operators and windows."""

    settings: Settings
    world: World
    seed: int
    start: date
    days: int
    hours: tuple[int, int] | None
    day_step: int
    operators: list[str]
    windows: list[datetime]


@dataclass(frozen=True)
class _Sample:
    """The simulated subscribers, how many there are and how many subscribers stand for one person."""

    population: Subscribers
    count: int
    sampling_fraction: float
    area_info: dict[str, Any] | None = None


@dataclass
class _DropCounts:
    """Per operator: drops written, events in them, and windows with no event (no drop)."""

    drops: dict[str, int]
    events: dict[str, int]
    empty: dict[str, int]

    @classmethod
    def zero(cls, operators: list[str]) -> _DropCounts:
        return cls({operator: 0 for operator in operators}, {operator: 0 for operator in operators},
                   {operator: 0 for operator in operators})


def _prepare_run(home: Path, start: date, days: int, subscribers: int, seed: int, hours: tuple[int, int] | None,
                 operators: list[str] | None, day_step: int) -> _Run:
    """Check the arguments, build the world (cached) and list the simulated windows."""
    if days < 1:
        raise ValueError("days must be at least 1")
    if subscribers < 1:
        raise ValueError("subscribers must be at least 1")
    if hours is not None and not (0 <= hours[0] < hours[1] <= 24):
        raise ValueError("hours must be FROM-TO with 0 <= FROM < TO <= 24")
    settings = get_settings(home)
    world = build_world(settings, seed)
    available = sorted(world.networks)
    chosen = sorted(operators) if operators else available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"unknown operators: {', '.join(unknown)} (known: {', '.join(available)})")
    if day_step < 1:
        raise ValueError("day_step must be at least 1")
    windows = simulated_windows(start, days, hours, day_step)
    return _Run(settings=settings, world=world, seed=seed, start=start, days=days, hours=hours, day_step=day_step,
                operators=chosen, windows=windows)


def _draw_sample(world: World, subscribers: int, seed: int, area: list[str] | None, sims_per_person: float,
                 area_visitors: bool) -> _Sample:
    """A sample of all Jakarta (``subscribers`` of them), or every SIM tied to an area at full scale."""
    if not area:
        return _Sample(make_subscribers(world, subscribers, seed), subscribers, subscribers / world.total_population)
    mask = _area_mask(world, area)
    if sims_per_person <= 0:
        raise ValueError("sims_per_person must be positive")
    total_sims = int(round(world.total_population * sims_per_person))
    population, kept = make_area_subscribers(world, total_sims, seed, mask, visitors=area_visitors)
    area_info = {
        "kecamatan": sorted(set(world.kelurahan["kec_name"].to_numpy()[mask].tolist())),
        "kelurahan": int(mask.sum()),
        "residents": int(round(float(world.kelurahan["population"].to_numpy()[mask].sum()))),
        "sims_per_person": sims_per_person,
        **kept,
    }
    # Every simulated SIM is a real one: a subscriber stands for 1 / sims_per_person people.
    return _Sample(population, population.count, sims_per_person, area_info)


def _active_gatherings(gatherings: list[dict] | None, run: _Run, sample: _Sample) -> list[ActiveGathering]:
    """The gatherings to inject (default ones when None), resolved against the sample, with ground truth."""
    specs = default_gatherings(run.windows, sample.count, run.seed) if gatherings is None else list(gatherings)
    active = resolve_gatherings(specs, run.world, sample.population, run.seed,
                                sampling_fraction=sample.sampling_fraction if sample.area_info else None)
    record_people_added(active, sample.population, run.seed, sample.sampling_fraction)
    return active


def _plan_faults(run: _Run, faults: set[str] | frozenset[str]) -> FaultPlan:
    gzip_operators = {name for name in run.operators
                      if run.world.networks[name].contract.layout.get("compression") == "gzip"}
    return FaultPlan.plan(set(faults), run.windows, run.operators, run.seed, gzip_operators=gzip_operators)


def _write_window(run: _Run, generator: WindowGenerator, fault_plan: FaultPlan, window_start: datetime,
                  counts: _DropCounts) -> None:
    """Every operator's drop of one window (through the fault plan), counted in ``counts``."""
    landing = run.settings.landing
    window_end = window_start + WINDOW
    raw = generator.raw_window(window_start)
    for operator in run.operators:
        canonical = generator.canonical(raw, operator, window_start)
        if canonical.height == 0:
            # Only possible with a handful of subscribers: no operator sends an empty file
            # (the contracts' not_empty rule would quarantine it), so nothing is dropped.
            counts.empty[operator] += 1
            continue
        counts.drops[operator] += fault_plan.write(
            landing,
            run.world.networks[operator].contract,
            canonical,
            operator=operator,
            window_start=window_start,
            window_end=window_end,
            key_id=keys.key_id(operator, window_start.date()),
            raw_msisdn_events=lambda c=canonical, o=operator: generator.msisdn_frame(c, raw, o),
        )
        counts.events[operator] += canonical.height
    fault_plan.after_window(window_start)


def _write_drops(run: _Run, generator: WindowGenerator, fault_plan: FaultPlan, progress: bool) -> _DropCounts:
    """Cell lists, then every window's events drops in time order, then the faults held back (late drops)."""
    landing = run.settings.landing
    storage.ensure_dir(landing)
    counts = _DropCounts.zero(run.operators)
    for operator in run.operators:
        _write_cells_drop(landing, run.settings, run.world.networks[operator], run.windows[0])

    bar = None
    # A bar only on a terminal: redirected to a file, tqdm's carriage returns pile up (~50 KB a run).
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(run.windows), unit="window", desc="simulate", leave=False)
    try:
        for window_start in run.windows:
            _write_window(run, generator, fault_plan, window_start, counts)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    fault_plan.finish()
    for record in fault_plan.records:
        if record["type"] == "late":
            counts.drops[record["operator"]] += 1
    return counts


def _ground_truth(run: _Run, sample: _Sample, active: list[ActiveGathering], fault_plan: FaultPlan) -> dict[str, Any]:
    """ground_truth.json: the run, the population per operator, injected gatherings and faults."""
    world, population = run.world, sample.population
    return {
        "seed": run.seed,
        "start": run.start.isoformat(),
        "days": run.days,
        "hours_utc": list(run.hours) if run.hours else None,
        "windows": len(run.windows),
        "subscribers": sample.count,
        "population": world.total_population,
        "sampling_fraction": sample.sampling_fraction,
        **({"area": sample.area_info, "day_step": run.day_step} if sample.area_info else {}),
        "operators": run.operators,
        "market_share": {operator: world.market_share[operator] for operator in run.operators},
        "subscribers_by_operator": {
            operator: int((population.operator_of == population.operators.index(operator)).sum())
            for operator in run.operators
        },
        "gatherings": [gathering.record for gathering in active],
        "faults": fault_plan.records,
    }


def simulate(
    home: Path,
    start: date,
    days: int,
    subscribers: int,
    seed: int,
    hours: tuple[int, int] | None = None,
    gatherings: list[dict] | None = None,
    faults: set[str] | frozenset[str] = frozenset(),
    operators: list[str] | None = None,
    progress: bool = False,
    area: list[str] | None = None,
    sims_per_person: float = 1.25,
    day_step: int = 1,
    area_visitors: bool = False,
) -> dict[str, Any]:
    """Write drops for [start, start + days) into ``home/landing`` and ``home/ground_truth.json``.

    ``hours`` keeps only windows whose UTC hour is in [from, to). ``gatherings``: None = default
    gatherings from the seed, [] = none. Same arguments, same bytes. Returns a summary: drops
    and events per operator, windows with no event for an operator (no drop written: tiny
    populations only), gatherings (ground truth), faults, windows, elapsed seconds.
    """
    began = time.monotonic()
    run = _prepare_run(home, start, days, subscribers, seed, hours, operators, day_step)
    sample = _draw_sample(run.world, subscribers, seed, area, sims_per_person, area_visitors)
    active = _active_gatherings(gatherings, run, sample)
    generator = WindowGenerator(run.world, sample.population, active, seed)
    fault_plan = _plan_faults(run, faults)
    counts = _write_drops(run, generator, fault_plan, progress)

    ground_truth = _ground_truth(run, sample, active, fault_plan)
    home_dir = run.settings.home
    home_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(home_dir / GROUND_TRUTH_FILE, json.dumps(ground_truth, indent=1).encode())
    return {
        "home": str(home_dir),
        "windows": len(run.windows),
        "drops": counts.drops,
        "events": counts.events,
        "total_events": sum(counts.events.values()),
        "empty_windows": {operator: count for operator, count in counts.empty.items() if count},
        "gatherings": ground_truth["gatherings"],
        "faults": fault_plan.records,
        "ground_truth": str(home_dir / GROUND_TRUTH_FILE),
        "elapsed_s": round(time.monotonic() - began, 2),
    }
