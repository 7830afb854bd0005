"""Nothing personal in the record that never forgets (docs/design.md section 4.2).

After the end-to-end week (which includes a drop full of raw MSISDNs), the Dagster instance
(run and event databases, compute logs), the reports, the outbox, the maps and the witness
files hold none of the subscriber keys or phone numbers that came in. The auditor's HTML
report is also opened in a real headless Chromium.
"""

from __future__ import annotations

import csv
import io
from datetime import date

import duckdb
import pyarrow.parquet as pq
import pytest

from crowd_platform.governance.privacy_scan import scan_for_subscriber_values
from crowd_platform_tests.support.ui import browser_page, requires_chromium

pytestmark = pytest.mark.xdist_group("pipeline")


def _input_needles(home) -> list[str]:
    """Subscriber keys from the published lake files and the MSISDNs of the quarantined drop."""
    keys: list[str] = []
    for path in sorted((home / "lake" / "events").rglob("*.parquet"))[::7]:
        column = pq.read_table(path, columns=["subscriber_key"]).column(0).to_pylist()
        keys.extend(column[:: max(1, len(column) // 20)])
    msisdns: list[str] = []
    for data in (home / "quarantine").rglob("*"):
        if data.is_file() and data.suffix == ".parquet":
            table = pq.read_table(data)
            msisdns.extend(str(value) for value in table.column(0).to_pylist()[:50])
        elif data.is_file() and data.name.endswith((".csv", ".csv.gz")) and not data.name.endswith(".json"):
            raw = data.read_bytes()
            if data.name.endswith(".gz"):
                import gzip

                raw = gzip.decompress(raw)
            rows = list(csv.reader(io.StringIO(raw.decode("utf-8", "replace"))))
            msisdns.extend(row[0] for row in rows[1:51] if row)
    assert len(set(keys)) > 100, "too few subscriber keys to make the scan meaningful"
    assert msisdns and all(value.lstrip("+").isdigit() for value in msisdns), "the MSISDN drop was not quarantined"
    return sorted(set(keys)) + sorted(set(msisdns))


def test_no_subscriber_value_in_dagster_storage_logs_or_outputs(pipeline_home):
    from crowd_platform.governance.report import write_report
    from crowd_platform.common.settings import get_settings

    settings = get_settings(pipeline_home.home)
    connection = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        report = write_report(connection, settings, date(2020, 3, 23), date(2020, 3, 28), None)
    finally:
        connection.close()
    needles = _input_needles(pipeline_home.home)
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
