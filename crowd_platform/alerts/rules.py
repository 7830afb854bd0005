"""The anomaly rule: when is a place's value unusual against its baseline?

A window's value at a place is compared with its baseline (same weekday and time of day):
robust z, ratio and absolute excess must all pass, per level (config/alert_rules.yaml).
Pure functions, no I/O beyond reading the rules file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml



MAD_TO_SIGMA = 1.4826  # MAD * 1.4826 estimates the standard deviation of a normal variable
SITE_LEVEL = "site"


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
