"""`audit trace`: from an alert (hand-made rows in a real DuckDB file) back to its drops, checks,
contract and code versions, runs, and the certificates of the drops' deletion."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from crowd_platform.cli import main
from crowd_platform.governance.lineage import TraceError, format_trace, trace, trace_json
from crowd_platform.publication.alerts import publish_alerts
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect

W0 = datetime(2020, 3, 31, 10, 0, tzinfo=timezone.utc)


def build_alert_rows(settings) -> None:
    """One alert over two windows, fed by two accepted drops; one drop since deleted with a certificate."""
    with connect(settings.warehouse_path) as con:
        for drop_id, operator, status in (("drop-a", "telkomsel", "deleted"), ("drop-b", "xl", "accepted")):
            con.execute(
                "INSERT INTO drops (drop_id, operator, feed, sha256, window_start, window_end, delivery, status, "
                "contract_id, contract_version, run_id, received_at) VALUES (?, ?, 'events', ?, ?, ?, 1, ?, ?, '1.0.0', ?, ?)",
                [drop_id, operator, drop_id[-1] * 64, W0, W0 + timedelta(minutes=15), status, f"{operator}-events",
                 f"run-ingest-{drop_id}", W0 + timedelta(minutes=16)])
            for rule, passed in (("not_empty", True), ("subscriber_key_is_hmac_digest", True), ("unknown_cell_share", drop_id == "drop-a")):
                con.execute("INSERT INTO check_results VALUES (?, ?, 'duckdb', ?, 100, 0, [], NULL, ?, 'run-ingest')",
                            [drop_id, rule, passed, W0])
        for offset, people in ((0, 1915), (15, 2377)):
            window = W0 + timedelta(minutes=offset)
            con.execute("INSERT INTO district_density VALUES (?, 'kelurahan', '3171010001', 900, ?, 12000.5, 2, "
                        "['drop-a', 'drop-b'], 'run-density', 1.0)", [window, people])
        # As published: the first window shown, the second hidden (complementary suppression).
        con.execute("INSERT INTO district_density_published VALUES (?, 'kelurahan', '3171010001', 1915, 12000.5, false, "
                    "NULL, 1.0), (?, 'kelurahan', '3171010001', NULL, NULL, true, 'complementary', 1.0)",
                    [W0, W0 + timedelta(minutes=15)])
        con.execute(
            "INSERT INTO crowd_alerts VALUES ('alert-1', 'kelurahan', '3171010001', 'Gambir', 'escalated', 2, ?, ?, NULL, "
            "2377, 743, 80, 3.2, 9.5, 1634, 2, ['drop-a', 'drop-b'], ['telkomsel-events@1.0.0', 'xl-events@1.0.0'], "
            "'abc123def4567890', 'run-alerts', ?)", [W0, W0 + timedelta(minutes=15), W0])
        con.execute("INSERT INTO alert_transitions VALUES ('alert-1', ?, 'opened', 1915, 3.2, 9.5, 'run-alerts'), "
                    "('alert-1', ?, 'escalated', 2377, 3.9, 11.5, 'run-alerts')", [W0, W0 + timedelta(minutes=15)])
        publish_alerts(con)
        con.execute("INSERT INTO deletion_certificates VALUES ('cert-1', 'raw_drop', 'drop-a', ?, NULL, NULL, 2048, ?, "
                    "'telkomsel-events#retention:events.subscriber_key', '24h', ?, 'unlink+fsync(dir)', 'verified: absent', "
                    "'dagster:daily_retention_schedule', 'run-retention')", [W0, "c" * 64, W0 + timedelta(days=1)])


@pytest.fixture()
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    settings = get_settings()
    settings.ensure_dirs()
    build_alert_rows(settings)
    return settings


def test_trace_follows_alert_to_drops_and_certificates(settings):
    with connect(settings.warehouse_path, read_only=True) as con:
        result = trace(con, "alert-1")
    assert result["windows"] == ["2020-03-31T10:00:00Z", "2020-03-31T10:15:00Z"]
    drops = {d["drop_id"]: d for d in result["drops"]}
    assert drops["drop-a"]["deleted"] and drops["drop-a"]["certificates"][0]["certificate_id"] == "cert-1"
    assert not drops["drop-b"]["deleted"] and drops["drop-b"]["checks"] == {
        "passed": 2, "failed": 1, "failed_rules": ["unknown_cell_share"]}
    assert drops["drop-a"]["sha256"] == "a" * 64 and drops["drop-a"]["contract_id"] == "telkomsel-events"
    assert result["code_versions"] == ["abc123def4567890"]
    assert "telkomsel-events@1.0.0" in result["contract_versions"]
    assert {"run-alerts", "run-density", "run-ingest-drop-a"} <= set(result["run_ids"])
    # Every number is the publication's: the last window is hidden there, so it is hidden here too,
    # and nothing (ratio, z, baseline, excess) is left to give it back.
    assert result["alert"]["people_estimate"] is None and result["alert"]["evidence_suppressed"]
    assert [t["people_estimate"] for t in result["transitions"]] == [1915, None]
    assert [d["people_estimate"] for d in result["density"]] == [1915, None]
    assert result["density"][1]["suppression"] == "complementary"
    text = format_trace(result) + trace_json(result)
    for internal in ("2377", "743", "3.2", "9.5", "1634", "3.9", "11.5"):
        assert internal not in text


def test_trace_unknown_alert(settings):
    with connect(settings.warehouse_path, read_only=True) as con, pytest.raises(TraceError):
        trace(con, "nope")


def test_cli_trace_text_and_json(settings, capsys):
    assert main(["audit", "trace", "alert-1"]) == 0
    text = capsys.readouterr().out
    assert "certificate cert-1" in text and "not deleted yet" in text and "abc123def4567890" in text
    assert main(["audit", "trace", "alert-1", "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["alert"]["alert_id"] == "alert-1"
    assert main(["audit", "trace", "missing-alert"]) == 2
    assert main(["audit", "deletions", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["object_id"] == "drop-a"
