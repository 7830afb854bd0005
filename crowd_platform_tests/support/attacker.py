"""An attacker reading every published output side by side (issue 14, docs/design.md section 4.3).

It gathers, for each (window, level, place), every number any output shows: the density
publication, the alert publication (alerts and transitions), `audit trace` (JSON) of every
alert, the auditor's HTML report and the operators' outbox files. Then it tries to recover
hidden cells:

- directly: an output shows a number for a cell another output hides, or a different number;
- by linear differencing: within a window every parent equals the sum of its children; with
  every shown number as known, a hidden cell is recovered when its unit vector lies in the row
  space of the equations over the hidden cells (all null-space vectors are 0 at that cell).

Rounding of published estimates only blurs what exact algebra recovers, so the structural test
is the strict one.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

Key = tuple[str, str, str]  # (window ISO, level, place)


def iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


@dataclass
class Sightings:
    """What each output shows per cell; None = shown as hidden."""
    shown: dict[Key, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, output: str, key: Key, value: Any) -> None:
        self.shown[key][output] = None if value is None else float(value)


def density_publication(con) -> dict[Key, float | None]:
    rows = con.execute("SELECT window_start, level, district_code, people_estimate FROM district_density_published").fetchall()
    return {(iso(window), level, code): (None if people is None else float(people)) for window, level, code, people in rows}


def collect_sightings(con, *, report_html: str | None = None, outbox: Path | None = None) -> Sightings:
    """Every number about a place and window in the alert publication, traces, report and outbox."""
    from crowd_platform.governance.lineage import trace

    seen = Sightings()
    alerts = con.execute("SELECT alert_id, level, place_id, last_window, people_estimate FROM crowd_alerts_published").fetchall()
    place_of = {alert_id: (level, place) for alert_id, level, place, _, _ in alerts}
    for alert_id, level, place, last_window, people in alerts:
        seen.add("crowd_alerts_published", (iso(last_window), level, place), people)
        traced = json.loads(json.dumps(trace(con, alert_id), default=str))
        seen.add("trace.alert", (traced["alert"]["last_window"], level, place), traced["alert"]["people_estimate"])
        for row in traced["transitions"]:
            seen.add("trace.transition", (row["window_start"], level, place), row["people_estimate"])
        for row in traced["density"]:
            seen.add("trace.density", (row["window_start"], level, place), row["people_estimate"])
        if report_html is not None:
            match = re.search(rf"<td>{re.escape(alert_id)}</td>(.*?)</tr>", report_html)
            if match:
                cells = re.findall(r"<td>(.*?)</td>", match.group(1))
                shown = cells[5]  # place, state, severity, opened, last window, people (last window)
                seen.add("report", (iso(last_window), level, place), None if shown == "hidden" else float(shown))
    for alert_id, window, people in con.execute(
            "SELECT alert_id, window_start, people_estimate FROM alert_transitions_published").fetchall():
        level, place = place_of[alert_id]
        seen.add("alert_transitions_published", (iso(window), level, place), people)
    for path in sorted(outbox.glob("*/*.json")) if outbox is not None else []:
        document = json.loads(path.read_text(encoding="utf-8"))
        estimate = document.get("crowd_estimate") or {}
        if "value" in estimate:
            seen.add(f"outbox:{path.parent.name}", (document["window_start"], document["level"], document["place_id"]),
                     estimate["value"])
    return seen


def contradictions(seen: Sightings, published: dict[Key, float | None], k: int) -> list[str]:
    """Cells where an output shows what the density publication hides, or another value, or a
    count of 1..k; a site count shown at all."""
    found = []
    for key, outputs in seen.shown.items():
        for output, value in outputs.items():
            if value is None:
                continue
            if 0 < value <= k:
                found.append(f"{output} shows {value} <= k at {key}")
            if key[1] == "site":
                found.append(f"{output} shows a site count at {key}")
            elif key not in published or published[key] is None:
                found.append(f"{output} shows a value the density publication hides at {key}")
            elif abs(published[key] - value) > 1e-9:
                found.append(f"{output} shows {value}, the density publication {published[key]}, at {key}")
    return found


def recoverable_cells(parents: dict[tuple[str, str], tuple[str, str] | None], known: dict[tuple[str, str], float | None]) -> list:
    """Hidden (level, code) cells of ONE window that the additive equations determine.

    ``parents``: (level, code) -> its parent's (level, code) or None; ``known``: (level, code) ->
    shown value, None when hidden. Every parent with children gives parent - sum(children) = 0."""
    hidden = sorted(key for key, value in known.items() if value is None)
    if not hidden:
        return []
    index = {key: position for position, key in enumerate(hidden)}
    children: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for child, parent in parents.items():
        if parent is not None and parent in known and child in known:
            children[parent].append(child)
    rows = []
    for parent, group in children.items():
        row = np.zeros(len(hidden))
        for key, sign in [(parent, 1.0)] + [(child, -1.0) for child in group]:
            if key in index:
                row[index[key]] += sign
        if row.any():
            rows.append(row)
    if not rows:
        return []
    matrix = np.array(rows)
    _, singular, vt = np.linalg.svd(matrix)
    rank = int((singular > 1e-9).sum())
    null_space = vt[rank:]  # rows spanning the null space of the equations over hidden cells
    if null_space.shape[0] == 0:
        return hidden  # every hidden cell is pinned down
    return [key for key, position in index.items() if np.all(np.abs(null_space[:, position]) < 1e-9)]
