"""Synthetic operator drops for Jakarta (``crowd-platform simulate``).

Real geography (BPS kelurahan, Kemendagri population, OpenCelliD cells), synthetic people:
subscribers live and work somewhere, commute, stay home on days off, use their phones with a
diurnal rhythm and gather when told to. Each operator gets one drop per 15-minute window in
the layout of its data contract, plus one cell-list drop at the start. The model is described
in docs/simulator.md; the entry point is in ``simulator/run.py``.

Public API: :func:`simulate`. It is loaded on first use: the world model imports GeoPandas and
Polars (~0.8 s), which commands that only read the demo's footing or a key must not pay.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["simulate", "simulated_windows", "FAULT_TYPES", "GROUND_TRUTH_FILE"]


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    entry = importlib.import_module("crowd_platform.simulator.run")
    try:
        return getattr(entry, name)
    except AttributeError:
        raise AttributeError(f"module 'crowd_platform.simulator' has no attribute {name!r}") from None
