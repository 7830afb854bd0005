"""`crowd-platform sunset`: every personal datum purged with certificates, k-anonymised
aggregates kept only with --keep-aggregates, and a scan proves no subscriber key is left."""

from __future__ import annotations

import hashlib
import os

from crowd_platform.cli import main
from crowd_platform.governance.audit_chain import verify_chain
from crowd_platform.governance.privacy_scan import scan_for_subscriber_values
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.publication.alerts import publish_alerts
from crowd_platform_tests.support.retention_drops import NEW_WINDOW, OLD_WINDOW, ingest_like


def test_sunset_keep_aggregates(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CROWD_ACTOR", "dpo@kominfo.example")
    settings = get_settings()
    settings.ensure_dirs()
    keys = [hashlib.sha256(f"sunset-{i}".encode()).hexdigest() for i in range(40)]
    ingest_like(settings, "drop-1", OLD_WINDOW, keys[:20])
    ingest_like(settings, "drop-2", NEW_WINDOW, keys[20:35])
    ingest_like(settings, "drop-3", NEW_WINDOW, keys[35:], status="quarantined")
    # The API's access records are kept at sunset (contract): they name requests, never a subscriber,
    # and the body of a CAMARA request only by 16 hex digits, so the scan for key-shaped values passes.
    from crowd_platform.api.access_log import AccessLog

    access = AccessLog(settings.home)
    access.record({"at": "2020-04-03T02:00:00.000000Z", "who": "city-ops", "method": "POST",
                   "route": "/camara/population-density/v0.3/retrieve", "dataset": "district_density_published",
                   "params": {"body_sha256_16": hashlib.sha256(b"{}").hexdigest()[:16]}, "status": 200})
    access.close()
    (settings.staging / "drop-9").mkdir()
    (settings.staging / "drop-9" / "events.parquet").write_bytes(b"leftover " + keys[0].encode())
    with connect(settings.warehouse_path) as con:
        con.execute("INSERT INTO bts_presence VALUES (?, 'telkomsel', 'cell', '510-10-1-1', 40, 'last', 'r')", [NEW_WINDOW])
        con.execute("INSERT INTO district_density VALUES (?, 'kelurahan', '3171', 40, 85, 100, 1, ['drop-2'], 'r', 1.0)", [NEW_WINDOW])
        con.execute("INSERT INTO district_density_published VALUES (?, 'kelurahan', '3171', 85, 100, false, NULL, 1.0)", [NEW_WINDOW])
        con.execute("INSERT INTO crowd_alerts (alert_id, level, place_id, state, severity, opened_window, last_window) "
                    "VALUES ('a1', 'kelurahan', '3171', 'closed', 1, ?, ?)", [NEW_WINDOW, NEW_WINDOW])
        publish_alerts(con)

    assert main(["sunset"]) == 2, "--confirm is required"
    assert main(["sunset", "--keep-aggregates", "--confirm"]) == 0
    out = capsys.readouterr().out
    assert "sunset verified: no personal data left" in out
    assert scan_for_subscriber_values([settings.home], keys) == []
    with connect(settings.warehouse_path, read_only=True) as con:
        counts = {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("bts_presence", "district_density", "district_density_published", "crowd_alerts",
                                "crowd_alerts_published")}
        statuses = {row[0] for row in con.execute("SELECT status FROM drops").fetchall()}
        kinds = {row[0] for row in con.execute("SELECT DISTINCT object_kind FROM deletion_certificates").fetchall()}
        actors = {row[0] for row in con.execute("SELECT DISTINCT actor FROM deletion_certificates").fetchall()}
        policies = {row[0] for row in con.execute("SELECT DISTINCT retention_period FROM deletion_certificates").fetchall()}
        assert verify_chain(con, settings.witness).ok
        last_action = con.execute("SELECT action FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()[0]
    # --keep-aggregates keeps what was published (the alert publication) and purges the internal evidence.
    assert counts == {"bts_presence": 0, "district_density": 0, "district_density_published": 1, "crowd_alerts": 0,
                      "crowd_alerts_published": 1}
    assert statuses == {"deleted"}
    assert {"raw_drop", "lake_partition", "quarantine", "staging", "warehouse_rows"} <= kinds
    assert actors == {"dpo@kominfo.example"} and policies == {"0h"}
    assert last_action == "sunset.verified"
    assert not [p for p in settings.home.rglob("*.parquet")]
    assert [p.name for p in (settings.home / "api_audit").glob("*.jsonl")] == [f"2020-04-03.{os.getpid()}.jsonl"]
