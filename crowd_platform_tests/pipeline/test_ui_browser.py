"""The Dagster UI in a real headless Chromium (Debian package, driven by Playwright), on the
instance the end-to-end week was processed in.

- Auditors: the read-only webserver renders the asset graph and an alert's upstream lineage,
  and refuses to launch a run.
- Data engineers: the landing sensor is running, a drop's check results and a quarantined
  drop's reasons are visible, and a backfill of a window range can be launched.

Screenshots go to a temporary folder; with UPDATE_SCREENSHOTS=1 they replace the pictures in
docs/screenshots/ (docs/ui.md): a test run never rewrites tracked files on its own.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest

from crowd_platform_tests.support.ui import PROJECT_ROOT, browser_page, dagster_webserver, graphql, requires_chromium

pytestmark = [pytest.mark.xdist_group("pipeline"), pytest.mark.browser, requires_chromium]

SCREENSHOTS = (PROJECT_ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS")
               else Path(tempfile.mkdtemp(prefix="crowd-ui-screenshots-")))
REPOSITORY = {"repositoryName": "__repository__", "repositoryLocationName": "crowd_platform"}


def _open(page, url: str, expect_text: str) -> None:
    page.goto(url)
    skip = page.get_by_role("button", name="Skip")
    try:  # the community sign-up modal appears on a fresh browser profile
        skip.click(timeout=5_000)
    except Exception:
        pass
    page.get_by_text(expect_text, exact=False).first.wait_for(state="visible", timeout=60_000)


def _shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.wait_for_timeout(1_500)  # let the graph layout settle
    page.screenshot(path=str(path))
    return path


def test_read_only_ui_for_auditors(pipeline_home):
    with dagster_webserver(pipeline_home.dagster_home, pipeline_home.home, read_only=True) as base:
        launch = graphql(
            base,
            "mutation($selector: JobOrPipelineSelector!) { launchPipelineExecution(executionParams: {selector: $selector})"
            " { __typename ... on UnauthorizedError { message } } }",
            {"selector": {**REPOSITORY, "pipelineName": "window_job"}},
        )
        assert launch["data"]["launchPipelineExecution"]["__typename"] == "UnauthorizedError"

        with browser_page() as page:
            _open(page, f"{base}/locations/crowd_platform/asset-groups/ingestion", "operator_drops")
            body = page.inner_text("body")
            assert "staged_events" in body
            assert _shot(page, "asset-graph-ingestion.png").stat().st_size > 10_000

            _open(page, f"{base}/assets/crowd_alerts?view=lineage&lineageScope=upstream&lineageDepth=5", "district_density")
            body = page.inner_text("body")
            for upstream in ("bts_presence", "density_baseline", "staged_events"):
                assert upstream in body, f"{upstream} missing from the alert's lineage"
            _shot(page, "alert-lineage.png")

            # A read-only UI offers no way to materialize.
            _open(page, f"{base}/assets/crowd_alerts", "crowd_alerts")
            materialize = page.get_by_role("button", name=re.compile("^Materialize"))
            assert materialize.count() == 0 or materialize.first.is_disabled()


def test_engineer_day_in_the_ui(pipeline_home):
    with dagster_webserver(pipeline_home.dagster_home, pipeline_home.home, read_only=False) as base:
        sensors = graphql(
            base,
            "query($selector: RepositorySelector!) { sensorsOrError(repositorySelector: $selector)"
            " { ... on Sensors { results { name sensorState { status } } } } }",
            {"selector": REPOSITORY},
        )["data"]["sensorsOrError"]["results"]
        assert {"name": "landing_sensor", "sensorState": {"status": "RUNNING"}} in sensors

        with browser_page() as page:
            _open(page, f"{base}/automation", "landing_sensor")
            _shot(page, "automation.png")

            _open(page, f"{base}/assets/operator_drops?view=checks", "contract_rules")
            body = page.inner_text("body")
            for check in ("no_raw_msisdn", "manifest_matches", "window_coverage"):
                assert check in body
            _shot(page, "drop-checks.png")

            # A quarantined drop and its reason, in the metadata of its window's partition.
            quarantined = pipeline_home.quarantined_drop
            assert quarantined, "the e2e week injects a raw-MSISDN drop: one must be quarantined"
            _open(page, f"{base}/assets/operator_drops?view=partitions&partition={pipeline_home.quarantined_window}", "quarantined")
            page.get_by_text("[Show Markdown]").first.click()
            page.get_by_text(quarantined).first.wait_for(state="visible")
            body = page.inner_text("body")
            assert "msisdn" in body.lower(), "the quarantine reason is not shown"
            _shot(page, "quarantined-drop.png")

        backfill = graphql(
            base,
            "mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params)"
            " { __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }",
            {"params": {
                "selector": {"partitionSetName": "window_job_partition_set", "repositorySelector": REPOSITORY},
                "partitionNames": ["2020-03-27-05:00", "2020-03-27-05:15"],
                "fromFailure": False,
                "tags": [{"key": "crowd/purpose", "value": "ui-test"}, {"key": "crowd/actor", "value": "pytest"}],
            }},
        )["data"]["launchPartitionBackfill"]
        assert backfill["__typename"] == "LaunchBackfillSuccess", json.dumps(backfill)[:500]
        backfills = graphql(base, "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id } } } }")
        ids = [item["id"] for item in backfills["data"]["partitionBackfillsOrError"]["results"]]
        assert backfill["backfillId"] in ids
