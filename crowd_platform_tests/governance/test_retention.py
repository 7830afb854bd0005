"""Retention deletes expired drops, lake partitions, quarantine and warehouse rows, with
certificates, and leaves no byte of them anywhere under CROWD_HOME (the DuckDB file and WAL
included)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from crowd_platform.governance.audit_chain import verify_chain
from crowd_platform.governance.privacy_scan import scan_for_subscriber_values
from crowd_platform.governance.retention import apply_retention, load_policy
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect, fetch_dicts
from crowd_platform_tests.support.retention_drops import NEW_WINDOW, OLD_WINDOW, ingest_like

KNOWN_KEY = hashlib.sha256(b"known subscriber for the retention test").hexdigest()
MARKER = "RETENTION-MARKER-" + hashlib.sha256(b"marker").hexdigest()[:24]
def _presence(settings, window_start: datetime, place_ids: list[str]) -> None:
    with connect(settings.warehouse_path) as con:
        con.executemany("INSERT INTO bts_presence VALUES (?, 'telkomsel', 'cell', ?, 20, 'last', 'run-1')",
                        [[window_start, place] for place in place_ids])
        con.execute("CHECKPOINT")


@pytest.fixture()
def settings(tmp_path):
    settings = get_settings(tmp_path / "home")
    settings.ensure_dirs()
    return settings


def test_policy_comes_from_contracts(settings):
    policy = load_policy(settings)
    assert policy.drop_rule("telkomsel").contract_id == "telkomsel-events"
    assert policy.drop_rule("telkomsel").hours == 24
    assert policy.rule("quarantine").hours == 7 * 24
    tables = {t.table: t for t in policy.tables}
    assert tables["bts_presence"].rule.hours == 8 * 168
    assert tables["audit_log"].rule.hours == 2 * 365 * 24
    assert tables["deletion_certificates"].keep_at_sunset


def test_each_feed_keeps_its_drops_for_its_own_contract_period(tmp_path):
    """Two event feeds of one operator may keep their drops for different periods (the FlowKit
    onboarding's calls and SMS feeds; SMS set to 6 h here), and a cell list is reference data
    kept for the cells contract's year: the drop's own feed contract decides, not the operator."""
    import shutil

    from crowd_platform.common.settings import Settings

    contracts = tmp_path / "contracts"
    shutil.copytree(Path(__file__).resolve().parents[2] / "deployments" / "nepal_flowkit" / "data_contracts", contracts)
    sms = contracts / "flowkit_sms.yaml"
    text = sms.read_text()
    assert "- property: retention\n  value: 24\n  unit: h" in text
    sms.write_text(text.replace("- property: retention\n  value: 24\n  unit: h", "- property: retention\n  value: 6\n  unit: h"))
    base = get_settings(tmp_path / "home")
    policy = load_policy(Settings(base.home, base.config, base.config_path, contracts, base.storage_url,
                                  base.alert_rules_override, base.witness_override))
    assert (policy.drop_rule("flowkit", "sms").contract_id, policy.drop_rule("flowkit", "sms").hours) == ("flowkit-sms", 6)
    assert (policy.drop_rule("flowkit", "calls").contract_id, policy.drop_rule("flowkit", "calls").hours) == ("flowkit-calls", 24)
    assert (policy.drop_rule("flowkit", "cells").element, policy.drop_rule("flowkit", "cells").hours) == ("cells", 365 * 24)


def test_a_cell_list_raw_copy_goes_after_its_own_year_and_the_registry_source_stays(settings):
    """Cell-list raw copies were never deleted; now they go after the cells contract's 1 y (not a
    day earlier), with a certificate. The canonical lake file stays, and the drop stays
    'accepted': bts_registry is rebuilt from every accepted list. At sunset both go."""
    from crowd_platform.governance.retention.plan import plan_drops

    raw = settings.raw / "cells-1.csv"
    raw.write_text("cell_id,lon,lat\n510-10-1-1,106.8,-6.2\n")
    lake = settings.home / "lake" / "cells" / "cells-1.parquet"
    lake.parent.mkdir(parents=True)
    lake.write_bytes(b"PAR1")
    window_end = OLD_WINDOW + timedelta(minutes=15)
    with connect(settings.warehouse_path) as con:
        con.execute("INSERT INTO drops (drop_id, operator, feed, sha256, window_start, window_end, status, raw_path, lake_path) "
                    "VALUES ('cells-1', 'telkomsel', 'cells', 'x', ?, ?, 'accepted', ?, ?)",
                    [OLD_WINDOW, window_end, str(raw.relative_to(settings.home)), str(lake.relative_to(settings.home))])
        policy = load_policy(settings)
        rule = policy.drop_rule("telkomsel", "cells")
        assert (rule.contract_id, rule.element, rule.hours) == ("operator-cells", "cells", 365 * 24)
        a_month_on = plan_drops(con, settings, policy, window_end + timedelta(days=30), sunset=False)
        at_sunset = plan_drops(con, settings, policy, window_end + timedelta(days=30), sunset=True)
    assert a_month_on == []
    assert {d.object_kind for d in at_sunset} == {"raw_drop", "lake_partition"}
    outcome = apply_retention(settings, as_of=window_end + timedelta(hours=rule.hours), actor="pytest")
    assert not outcome.failed
    assert [(d.object_kind, d.object_id, d.rule.policy) for d in outcome.deletions] == [
        ("raw_drop", "cells-1", "operator-cells#retention:cells")]
    assert not raw.exists() and lake.exists()
    with connect(settings.warehouse_path, read_only=True) as con:
        assert con.execute("SELECT status FROM drops WHERE drop_id = 'cells-1'").fetchone()[0] == "accepted"


# Warehouse tables without a retention period, and why: none holds a per-subscriber or
# per-window count (drops/check_results are the lineage of what arrived, marked deleted).
NO_RETENTION = {
    "api_tokens": "API token hashes, names and dataset scopes (access control): no data, no counts",
    "drops": "drop metadata (ids, hashes, statuses): the lineage an auditor follows, no content",
    "check_results": "rule verdicts of drops: rule names and counts only",
    "bts_registry": "cell positions: network reference data",
    "bts_registry_rejects": "rejected cell-list rows: network reference data",
    "districts": "boundaries and population: public reference data",
    "district_hierarchy": "boundaries: public reference data",
    "bts_coverage": "coverage polygons of sites: network reference data",
    "bts_district_weights": "apportionment weights: network reference data",
    "site_places": "co-located sites as physical places: network reference data",
}


def test_every_warehouse_table_has_a_retention_period_or_a_reason(settings):
    """A new table that holds counts must not be kept forever by omission (storage limitation)."""
    import re

    from crowd_platform.common.warehouse import SCHEMA_DIR

    tables = {name for ddl in SCHEMA_DIR.glob("*.sql")
              for name in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", ddl.read_text())}
    governed = {rule.table for rule in load_policy(settings).tables}
    assert tables - governed - set(NO_RETENTION) == set()
    assert governed & set(NO_RETENTION) == set()
    assert {"alert_place_state", "alert_evaluations"} <= governed


def test_deleted_means_gone(settings):
    other_keys = [hashlib.sha256(f"other-{i}".encode()).hexdigest() for i in range(40)]
    ingest_like(settings, "drop-old", OLD_WINDOW, [KNOWN_KEY, *other_keys[:20]])
    ingest_like(settings, "drop-new", NEW_WINDOW, other_keys[20:])
    ingest_like(settings, "drop-bad", OLD_WINDOW, other_keys[:5], status="quarantined")
    # Same row group holds expired (marker) and retained rows: a partial delete, the hard case.
    eight_weeks_ago = NEW_WINDOW - timedelta(weeks=9)
    _presence(settings, eight_weeks_ago, [MARKER, "510-10-1-1"])
    _presence(settings, NEW_WINDOW, [f"510-10-1-{i}" for i in range(2, 300)])
    home = settings.home
    before = scan_for_subscriber_values([home], [KNOWN_KEY, MARKER])
    assert {hit.needle_index for hit in before} == {0, 1}, "both values must be findable before retention"
    assert any(Path(hit.path).name == "warehouse.duckdb" for hit in before if hit.needle_index == 1)

    as_of = NEW_WINDOW + timedelta(hours=2)  # old window > 24 h ago, new one not
    dry = apply_retention(settings, as_of, dry_run=True)
    assert {d.object_kind for d in dry.deletions} == {"raw_drop", "lake_partition", "warehouse_rows"}
    assert scan_for_subscriber_values([home], [KNOWN_KEY]), "dry run deletes nothing"

    outcome = apply_retention(settings, as_of, actor="test-dpo", purpose="retention-test")
    assert not outcome.failed
    assert outcome.compaction and outcome.compaction["seconds"] >= 0
    assert scan_for_subscriber_values([home], [KNOWN_KEY, MARKER]) == []

    with connect(settings.warehouse_path, read_only=True) as con:
        statuses = dict(con.execute("SELECT drop_id, status FROM drops").fetchall())
        certificates = fetch_dicts(con, "SELECT * FROM deletion_certificates ORDER BY object_kind")
        remaining = con.execute("SELECT count(*) FROM bts_presence").fetchone()[0]
        assert verify_chain(con, settings.witness).ok
        actions = [row[0] for row in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()]
    assert statuses == {"drop-old": "deleted", "drop-new": "accepted", "drop-bad": "quarantined"}
    assert remaining == 298
    kinds = {(c["object_kind"], c["object_id"]) for c in certificates}
    assert ("raw_drop", "drop-old") in kinds and ("lake_partition", "drop-old") in kinds
    assert ("warehouse_rows", f"bts_presence/{eight_weeks_ago:%Y-%m-%d}") in kinds
    for certificate in certificates:
        assert certificate["verification"].startswith("verified"), certificate["verification"]
        assert certificate["content_sha256"] and len(certificate["content_sha256"]) == 64
        assert certificate["actor"] == "test-dpo"
    lake_cert = next(c for c in certificates if c["object_kind"] == "lake_partition")
    assert lake_cert["rows"] == 21 and lake_cert["policy"] == "telkomsel-events#retention:events.subscriber_key"
    assert "sampled keys not found" in lake_cert["verification"]
    rows_cert = next(c for c in certificates if c["object_kind"] == "warehouse_rows")
    assert rows_cert["rows"] == 2 and rows_cert["retention_period"] == "8w"
    assert actions.count("retention.deleted") == len(certificates) and actions[-1] == "retention.completed"

    # A week later the quarantined drop expires too; the new drop has long expired as well.
    later = apply_retention(settings, OLD_WINDOW + timedelta(days=8))
    assert {(d.object_kind, d.object_id) for d in later.deletions} >= {("quarantine", "drop-bad"), ("raw_drop", "drop-new")}
    assert not (settings.quarantine / "drop-bad").exists()
    assert not list(settings.raw.iterdir())
    assert not [p for p in settings.events_lake.rglob("*") if p.is_file()]


def test_retention_is_idempotent(settings):
    ingest_like(settings, "drop-old", OLD_WINDOW, [KNOWN_KEY])
    first = apply_retention(settings, NEW_WINDOW + timedelta(days=1))
    second = apply_retention(settings, NEW_WINDOW + timedelta(days=1))
    assert len(first.deletions) == 2 and second.deletions == []
    assert second.compaction is None
