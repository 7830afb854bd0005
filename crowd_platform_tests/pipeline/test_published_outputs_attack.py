"""The end-to-end week read by an attacker: every published output side by side.

After the simulated week (real drops, real Dagster runs), the attacker (support/attacker.py)
reads the density publication, the alert publication, `audit trace` of every alert, the
auditor's report and the operators' outbox files, and tries to recover a hidden count directly
(one output showing what another hides) or by differencing within each window. A scan of every
table the platform contract marks published looks for a count of people in 1..k.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
import yaml

from crowd_platform.common.settings import CONTRACTS_DIR, get_settings
from crowd_platform.governance.report import collect, render
from crowd_platform_tests.support.attacker import (
    collect_sightings, contradictions, density_publication, iso, recoverable_cells,
)

pytestmark = pytest.mark.xdist_group("pipeline")

# Columns of published tables that hold a number of people (or subscribers); the scan also
# catches a renamed one through the pattern below.
COUNT_COLUMN_WORDS = ("people", "subscriber", "observed", "estimate", "excess", "visitors", "count")


def _published_tables() -> list[str]:
    contract = yaml.safe_load((CONTRACTS_DIR / "platform_datasets.yaml").read_text(encoding="utf-8"))
    tables = []
    for element in contract["schema"]:
        custom = {item["property"]: item["value"] for item in element.get("customProperties", [])}
        if custom.get("storage") == "warehouse" and custom.get("published"):
            tables.append(element["physicalName"])
    return tables


def test_no_output_contradicts_the_publication_and_no_hidden_cell_is_recoverable(pipeline_home):
    settings = get_settings(pipeline_home.home)
    k = settings.k_anonymity
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        html = render(collect(con, settings, date(2020, 3, 23), date(2020, 3, 28)), settings,
                      date(2020, 3, 23), date(2020, 3, 28))
        published = density_publication(con)
        seen = collect_sightings(con, report_html=html, outbox=settings.outbox)
        alerts = con.execute("SELECT count(*) FROM crowd_alerts_published").fetchone()[0]
        # What earlier versions of a window showed (superseded deliveries): a hidden cell whose value
        # now equals one shown before is known to whoever kept that version.
        seen_before = {(iso(window), level, code) for window, level, code in con.execute(
            "SELECT d.window_start, d.level, d.district_code FROM district_density d JOIN district_density_shown s "
            "ON s.window_start = d.window_start AND s.level = d.level AND s.district_code = d.district_code "
            "AND s.people_estimate = round(d.people_estimate)::BIGINT").fetchall()}
        parents = {(level, code): ((parent_level, parent) if parent else None) for level, code, parent_level, parent in
                   con.execute("SELECT d.level, d.district_code, p.level, p.district_code FROM districts d "
                               "LEFT JOIN districts p ON p.district_code = d.parent_code AND p.level_rank = d.level_rank + 1"
                               ).fetchall()}
    assert alerts > 0 and sum(1 for value in published.values() if value is None) > 0, "nothing to attack"
    assert len(seen.shown) > alerts  # transitions, traces, report and outbox were all read
    assert contradictions(seen, published, k) == []
    by_window: dict[str, dict] = {}
    for (window, level, code), value in published.items():
        known_before = value is None and (window, level, code) in seen_before
        by_window.setdefault(window, {})[(level, code)] = -1.0 if known_before else value  # any number: known
    recovered = {window: cells for window, known in by_window.items() if (cells := recoverable_cells(parents, known))}
    assert recovered == {}


def test_no_count_of_people_in_1_to_k_in_any_published_table(pipeline_home):
    settings = get_settings(pipeline_home.home)
    k = settings.k_anonymity
    tables = _published_tables()
    assert {"district_density_published", "crowd_alerts_published", "alert_transitions_published",
            "district_unique_subscribers_published", "district_daily_location_published",
            "district_od_flows_published"} <= set(tables)
    assert "crowd_alerts" not in tables and "alert_transitions" not in tables
    found, scanned = [], 0
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for table in tables:
            columns = con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND data_type IN "
                "('BIGINT', 'INTEGER', 'DOUBLE', 'HUGEINT', 'DECIMAL', 'FLOAT')", [table]).fetchall()
            for (column,) in columns:
                if not any(word in column.lower() for word in COUNT_COLUMN_WORDS):
                    continue
                scanned += 1
                small = con.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" > 0 AND "{column}" <= ?', [k]).fetchone()[0]
                if small:
                    found.append(f"{table}.{column}: {small} value(s) in 1..{k}")
    assert scanned >= 3 and found == []
