"""Nothing personal in the record that never forgets (docs/design.md section 4.2).

After the end-to-end week (which includes a drop full of raw MSISDNs), the Dagster instance
(run and event databases, compute logs), the reports, the outbox, the maps and the witness
files hold none of the subscriber keys or phone numbers that came in. The auditor's HTML
report is also opened in a real headless Chromium.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow.parquet as pq
import pytest

from crowd_platform.governance.privacy_scan import scan_for_subscriber_values
from crowd_platform_tests.support.ui import browser_page, requires_chromium

pytestmark = pytest.mark.xdist_group("pipeline")


def _input_needles(run) -> list[str]:
    """Subscriber keys from the published lake files, and the MSISDNs of the raw-MSISDN drop (read
    from landing before processing: the platform deletes that drop's data on arrival)."""
    keys: list[str] = []
    for path in sorted((run.home / "lake" / "events").rglob("*.parquet"))[::7]:
        column = pq.read_table(path, columns=["subscriber_key"]).column(0).to_pylist()
        keys.extend(column[:: max(1, len(column) // 20)])
    assert len(set(keys)) > 100, "too few subscriber keys to make the scan meaningful"
    assert len(run.raw_msisdns) > 10, "the simulated week has no raw-MSISDN drop"
    return sorted(set(keys)) + list(run.raw_msisdns)


def test_raw_msisdns_are_nowhere_in_the_home(pipeline_home):
    """No raw phone number is stored anywhere: the drop that carried them is reduced to its report."""
    hits = scan_for_subscriber_values([pipeline_home.home], list(pipeline_home.raw_msisdns))
    assert not hits, [(hit.path, hit.where, hit.fingerprint) for hit in hits[:10]]
    reports = [path for path in (pipeline_home.home / "quarantine").rglob("report.json")
               if "raw_msisdn" in path.read_text(encoding="utf-8")]
    assert reports, "the raw-MSISDN drop left no quarantine report"


def test_no_subscriber_value_in_dagster_storage_logs_or_outputs(pipeline_home):
    from crowd_platform.governance.report import write_report
    from crowd_platform.common.settings import get_settings

    settings = get_settings(pipeline_home.home)
    connection = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        report = write_report(connection, settings, date(2020, 3, 23), date(2020, 3, 28), None)
    finally:
        connection.close()
    needles = _input_needles(pipeline_home)
    # The scanner must see what it is looking for: the lake itself contains the keys.
    assert scan_for_subscriber_values([pipeline_home.home / "lake"], needles[:50])
    scanned = [pipeline_home.dagster_home, settings.reports, settings.outbox, settings.witness, settings.geo_cache]
    hits = scan_for_subscriber_values(scanned, needles)
    assert not hits, [(hit.path, hit.where, hit.fingerprint) for hit in hits[:10]]
    assert report.exists()


@pytest.mark.browser
@requires_chromium
def test_audit_report_renders_in_chromium(pipeline_home):
    reports = sorted((pipeline_home.home / "reports").glob("*.html"))
    if not reports:
        from crowd_platform.governance.report import write_report
        from crowd_platform.common.settings import get_settings

        settings = get_settings(pipeline_home.home)
        connection = duckdb.connect(str(settings.warehouse_path), read_only=True)
        try:
            reports = [write_report(connection, settings, date(2020, 3, 23), date(2020, 3, 28), None)]
        finally:
            connection.close()
    with browser_page() as page:
        page.goto(reports[-1].as_uri())
        body = page.inner_text("body")
    for section in ("quarantine", "alert", "chain"):
        assert section in body.lower(), f"report has no {section} section"
    assert pipeline_home.quarantined_drop.split("_")[0] in body  # the operator of the quarantined drop
