"""Retention and the audit checkpoint through Dagster, as the demo and the UI run them: the
certificates carry the run id and the run's ``crowd/actor``; the checkpoint lands in the witness
folder; the retention schedule skips a storage root holding simulated data."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from crowd_platform.common.settings import get_settings
from crowd_platform_tests.support.retention_drops import NEW_WINDOW, OLD_WINDOW, ingest_like

KEY = "ab" * 32


@pytest.fixture()
def governed_home(tmp_path, monkeypatch):
    home, witness = tmp_path / "home", tmp_path / "witness"
    monkeypatch.setenv("CROWD_HOME", str(home))
    monkeypatch.setenv("CROWD_WITNESS", str(witness))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    settings = get_settings(home)
    settings.ensure_dirs()
    return settings, witness


def test_retention_and_checkpoint_through_dagster_carry_run_and_actor(governed_home):
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import run_governance

    settings, witness = governed_home
    ingest_like(settings, "drop-old", OLD_WINDOW, [KEY])
    instance = get_instance(settings)
    outcome = run_governance(settings, instance, as_of=NEW_WINDOW + timedelta(days=1), purpose="test-governance",
                             actor="auditor:alice", progress=lambda _: None)
    assert outcome.ok, outcome.failed_runs
    assert set(outcome.runs) == {"retention", "audit_log"}
    assert outcome.metadata["retention"]["objects_deleted"] == 2
    connection = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        certificates = connection.execute("SELECT DISTINCT run_id, actor FROM deletion_certificates").fetchall()
        checkpoint = connection.execute("SELECT actor, run_id, purpose FROM audit_log WHERE action = 'audit.checkpoint'").fetchall()
    finally:
        connection.close()
    assert certificates == [(outcome.runs["retention"], "auditor:alice")]
    assert checkpoint == [("auditor:alice", outcome.runs["audit_log"], "test-governance")]
    assert (witness / "checkpoints.jsonl").exists()
    # Both assets are materialized in the instance (not "Never materialized" in the UI).
    for key in ("retention", "audit_log"):
        assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None


def test_retention_schedule_skips_a_home_of_simulated_data(governed_home):
    from crowd_platform.governance.schedules import daily_retention_schedule

    settings, _ = governed_home
    context = dg.build_schedule_context()
    assert isinstance(daily_retention_schedule.evaluate_tick(context).run_requests[0], dg.RunRequest)
    (settings.home / "ground_truth.json").write_text("{}")
    skipped = daily_retention_schedule.evaluate_tick(dg.build_schedule_context())
    assert not skipped.run_requests and "simulated data" in skipped.skip_message
