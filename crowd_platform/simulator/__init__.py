"""Synthetic operator drops for Jakarta (``crowd-platform simulate``).

Real geography (BPS kelurahan, Kemendagri population, OpenCelliD cells), synthetic people:
subscribers live and work somewhere, commute, stay home on days off, use their phones with a
diurnal rhythm and gather when told to. Each operator gets one drop per 15-minute window in
the layout of its data contract, plus one cell-list drop at the start. The model is described
in docs/simulator.md.

Public API: :func:`simulate`.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from crowd_platform.common import storage
from crowd_platform.common.contracts import contract_for
from crowd_platform.common.settings import get_settings
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
from crowd_platform.simulator.gatherings import default_gatherings, record_people_added, resolve_gatherings
from crowd_platform.simulator.population import make_area_subscribers, make_subscribers
from crowd_platform.simulator.world import OperatorNetwork, build_world

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
    area_info = None
    if area:
        mask = _area_mask(world, area)
        if sims_per_person <= 0:
            raise ValueError("sims_per_person must be positive")
        total_sims = int(round(world.total_population * sims_per_person))
        population, kept = make_area_subscribers(world, total_sims, seed, mask, visitors=area_visitors)
        subscribers = population.count
        area_info = {
            "kecamatan": sorted(set(world.kelurahan["kec_name"].to_numpy()[mask].tolist())),
            "kelurahan": int(mask.sum()),
            "residents": int(round(float(world.kelurahan["population"].to_numpy()[mask].sum()))),
            "sims_per_person": sims_per_person,
            **kept,
        }
        # Every simulated SIM is a real one: a subscriber stands for 1 / sims_per_person people.
        sampling_fraction = sims_per_person
    else:
        population = make_subscribers(world, subscribers, seed)
        sampling_fraction = subscribers / world.total_population
    specs = default_gatherings(windows, subscribers, seed) if gatherings is None else list(gatherings)
    active = resolve_gatherings(specs, world, population, seed,
                                sampling_fraction=sampling_fraction if area else None)
    record_people_added(active, population, seed, sampling_fraction)
    generator = WindowGenerator(world, population, active, seed)
    gzip_operators = {name for name in chosen if world.networks[name].contract.layout.get("compression") == "gzip"}
    fault_plan = FaultPlan.plan(set(faults), windows, chosen, seed, gzip_operators=gzip_operators)

    landing = settings.landing
    storage.ensure_dir(landing)
    drops = {operator: 0 for operator in chosen}
    events = {operator: 0 for operator in chosen}
    empty = {operator: 0 for operator in chosen}
    for operator in chosen:
        _write_cells_drop(landing, settings, world.networks[operator], windows[0])

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(windows), unit="window", desc="simulate", leave=False)
    try:
        for window_start in windows:
            window_end = window_start + WINDOW
            raw = generator.raw_window(window_start)
            for operator in chosen:
                canonical = generator.canonical(raw, operator, window_start)
                if canonical.height == 0:
                    # Only possible with a handful of subscribers: no operator sends an empty file
                    # (the contracts' not_empty rule would quarantine it), so nothing is dropped.
                    empty[operator] += 1
                    continue
                drops[operator] += fault_plan.write(
                    landing,
                    world.networks[operator].contract,
                    canonical,
                    operator=operator,
                    window_start=window_start,
                    window_end=window_end,
                    key_id=keys.key_id(operator, window_start.date()),
                    raw_msisdn_events=lambda c=canonical, o=operator: generator.msisdn_frame(c, raw, o),
                )
                events[operator] += canonical.height
            fault_plan.after_window(window_start)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    fault_plan.finish()
    for record in fault_plan.records:
        if record["type"] == "late":
            drops[record["operator"]] += 1

    ground_truth = {
        "seed": seed,
        "start": start.isoformat(),
        "days": days,
        "hours_utc": list(hours) if hours else None,
        "windows": len(windows),
        "subscribers": subscribers,
        "population": world.total_population,
        "sampling_fraction": sampling_fraction,
        **({"area": area_info, "day_step": day_step} if area_info else {}),
        "operators": chosen,
        "market_share": {operator: world.market_share[operator] for operator in chosen},
        "subscribers_by_operator": {
            operator: int((population.operator_of == population.operators.index(operator)).sum()) for operator in chosen
        },
        "gatherings": [gathering.record for gathering in active],
        "faults": fault_plan.records,
    }
    settings.home.mkdir(parents=True, exist_ok=True)
    _atomic_write(settings.home / GROUND_TRUTH_FILE, json.dumps(ground_truth, indent=1).encode())
    return {
        "home": str(settings.home),
        "windows": len(windows),
        "drops": drops,
        "events": events,
        "total_events": sum(events.values()),
        "empty_windows": {operator: count for operator, count in empty.items() if count},
        "gatherings": ground_truth["gatherings"],
        "faults": fault_plan.records,
        "ground_truth": str(settings.home / GROUND_TRUTH_FILE),
        "elapsed_s": round(time.monotonic() - began, 2),
    }
