"""Property-based attack on everything published about a place: density, alerts, traces, report.

Hypothesis draws a district hierarchy, its people per window (many at or near k), and alerts at
random places and levels (sites too) whose internal evidence (observed, baseline, ratio, z,
excess) is the true count. The platform's own code then publishes: the density step's
k-anonymity (density.districts.publish_density), the alert publication
(publication.alerts.publish_alerts), `audit trace` of every alert and the auditor's report. The
attacker (support/attacker.py) reads them side by side and must find no contradiction between
outputs, no count of 1..k, no site count, and no hidden cell that the additive equations of its
window pin down.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis import strategies as st

from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.density.districts import publish_density
from crowd_platform.governance.lineage import trace
from crowd_platform.governance.report import collect, render
from crowd_platform.publication.alerts import publish_alerts
from crowd_platform_tests.support.attacker import (
    collect_sightings, contradictions, density_publication, iso, recoverable_cells,
)

K = 15
W0 = datetime(2020, 3, 31, 3, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=15)
LEVELS = ("kelurahan", "kecamatan", "kabkota")
INTERNAL_EVIDENCE = ("observed", "baseline_median", "baseline_mad", "ratio", "robust_z", "excess_people")


@st.composite
def scenarios(draw):
    """Districts (code, level, parent), people per window for the finest ones, and alerts."""
    kabkota = [f"KB{i}" for i in range(draw(st.integers(1, 2)))]
    districts, finest = [(code, "kabkota", None) for code in kabkota], []
    for parent in kabkota:
        for i in range(draw(st.integers(1, 3))):
            kecamatan = f"{parent}.C{i}"
            districts.append((kecamatan, "kecamatan", parent))
            for j in range(draw(st.integers(1, 4))):
                districts.append((f"{kecamatan}.L{j}", "kelurahan", kecamatan))
                finest.append(f"{kecamatan}.L{j}")
    windows = draw(st.integers(1, 3))
    people = {(w, code): draw(st.integers(0, 4 * K)) for w in range(windows) for code in finest}
    places = [(code, level) for code, level, _ in districts] + [(f"place-{i}", "site") for i in range(3)]
    alerts = draw(st.lists(st.tuples(st.sampled_from(places), st.integers(0, windows - 1), st.integers(0, windows - 1),
                                     st.integers(1, 3 * K)), max_size=6, unique_by=lambda alert: alert[0]))
    return districts, people, windows, alerts


def _totals(districts, people, windows) -> dict[tuple[int, str], int]:
    children = {}
    for code, _, parent in districts:
        children.setdefault(parent, []).append(code)

    def total(w, code):
        return people[(w, code)] if (w, code) in people else sum(total(w, child) for child in children.get(code, []))

    return {(w, code): total(w, code) for w in range(windows) for code, _, _ in districts}


def _write(con, districts, people, windows, alerts) -> None:
    for code, level, parent in districts:
        con.execute("INSERT INTO districts (district_code, level, level_rank, name, parent_code, is_admin_unit, area_km2, "
                    "land_area_km2) VALUES (?, ?, ?, ?, ?, true, 1.0, 1.0)", [code, level, LEVELS.index(level), code, parent])
    totals = _totals(districts, people, windows)
    level_of = {code: level for code, level, _ in districts}
    for (w, code), value in totals.items():
        con.execute("INSERT INTO district_density (window_start, level, district_code, subscribers, people_estimate, "
                    "density_per_km2, drop_ids, run_id) VALUES (?, ?, ?, ?, ?, ?, ['d'], 'r')",
                    [W0 + w * STEP, level_of[code], code, value, value, float(value)])
    publish_density(con, K, W0, W0 + windows * STEP)
    for number, ((place, level), opened, last, baseline) in enumerate(alerts):
        first, final = sorted((opened, last))
        observed = totals.get((final, place), baseline + 7)  # a site's internal count: any small number
        con.execute(
            "INSERT INTO crowd_alerts (alert_id, level, place_id, place_name, state, severity, opened_window, last_window, "
            "observed, baseline_median, baseline_mad, ratio, robust_z, excess_people, windows, drop_ids, code_version, "
            "run_id, updated_at) VALUES (?, ?, ?, ?, 'open', 1, ?, ?, ?, ?, 2.0, ?, ?, ?, ?, ['d'], 'v', 'r', ?)",
            [f"a{number}", level, place, place, W0 + first * STEP, W0 + final * STEP, observed, baseline,
             observed / baseline, (observed - baseline) / 2.0, observed - baseline, final - first + 1, W0])
        for w in range(first, final + 1):
            internal = totals.get((w, place), baseline + 3)
            con.execute("INSERT INTO alert_transitions VALUES (?, ?, ?, ?, ?, ?, 'r')",
                        [f"a{number}", W0 + w * STEP, "opened" if w == first else "escalated", internal,
                         internal / baseline, 1.0])
    publish_alerts(con)


def _parents(con) -> dict[tuple[str, str], tuple[str, str] | None]:
    rows = con.execute("SELECT d.level, d.district_code, p.level, p.district_code FROM districts d "
                       "LEFT JOIN districts p ON p.district_code = d.parent_code").fetchall()
    return {(level, code): ((parent_level, parent) if parent else None) for level, code, parent_level, parent in rows}


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_no_hidden_count_recoverable_from_all_outputs_side_by_side(scenario):
    home = Path(tempfile.mkdtemp(prefix="attack-"))
    try:
        platform = get_settings(home)
        platform.ensure_dirs()
        with connect(platform.warehouse_path) as con:
            _write(con, *scenario)
            html = render(collect(con, platform, date(2020, 3, 31), date(2020, 3, 31)), platform,
                          date(2020, 3, 31), date(2020, 3, 31))
            published = density_publication(con)
            seen = collect_sightings(con, report_html=html)
            assert contradictions(seen, published, K) == []
            parents = _parents(con)
            for window in sorted({key[0] for key in published}):
                known = {(level, code): value for (w, level, code), value in published.items() if w == window}
                # Whatever any output showed counts as known too (it must agree, checked above).
                for (w, level, code), outputs in seen.shown.items():
                    if w == window and level != "site" and any(v is not None for v in outputs.values()):
                        known[(level, code)] = next(v for v in outputs.values() if v is not None)
                assert recoverable_cells(parents, known) == [], window
            for (alert_id,) in con.execute("SELECT alert_id FROM crowd_alerts").fetchall():
                traced = json.dumps(trace(con, alert_id), default=str)
                assert not any(f'"{name}"' in traced for name in INTERNAL_EVIDENCE)
            assert "<th>ratio</th>" not in html and "<th>robust z</th>" not in html
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_attacker_finds_a_planted_leak():
    """The attacker is not blind: a shown child of a shown parent with one hidden sibling is found,
    and an alert that shows a hidden value is a contradiction."""
    parents = {("kelurahan", "A"): ("kecamatan", "P"), ("kelurahan", "B"): ("kecamatan", "P"), ("kecamatan", "P"): None}
    assert recoverable_cells(parents, {("kecamatan", "P"): 40.0, ("kelurahan", "A"): 30.0, ("kelurahan", "B"): None}) \
        == [("kelurahan", "B")]
    assert recoverable_cells(parents, {("kecamatan", "P"): 40.0, ("kelurahan", "A"): None, ("kelurahan", "B"): None}) == []
    from crowd_platform_tests.support.attacker import Sightings

    seen = Sightings()
    key = (iso(W0), "kelurahan", "B")
    seen.add("trace.density", key, 10.0)
    seen.add("outbox:xl", (iso(W0), "site", "place-1"), 40.0)
    found = contradictions(seen, {key: None}, K)
    assert any("<= k" in line for line in found) and any("hides" in line for line in found)
    assert any("site count" in line for line in found)
