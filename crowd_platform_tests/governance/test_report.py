"""Auditor HTML report: self-contained, every section present, counts k-anonymised."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from crowd_platform.cli import main
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.publication.alerts import publish_alerts


def test_report_sections_and_k_anonymity(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    settings = get_settings()
    settings.ensure_dirs()
    start = datetime(2020, 3, 31, tzinfo=timezone.utc)
    with connect(settings.warehouse_path) as con:
        # telkomsel 40 drops, xl 20, tri 3 (at or below k=15: must be hidden).
        for operator, count in (("telkomsel", 40), ("xl", 20), ("tri", 3)):
            for number in range(count):
                window = start + timedelta(minutes=15 * number)
                con.execute("INSERT INTO drops (drop_id, operator, feed, window_start, window_end, status) "
                            "VALUES (?, ?, 'events', ?, ?, 'accepted')",
                            [f"{operator}-{number}", operator, window, window + timedelta(minutes=15)])
                con.execute("INSERT INTO check_results VALUES (?, 'not_empty', 'duckdb', true, 1, 0, [], NULL, ?, NULL)",
                            [f"{operator}-{number}", window])
        con.execute("INSERT INTO crowd_alerts (alert_id, level, place_id, state, severity, opened_window, last_window, "
                    "observed, ratio, drop_ids) VALUES ('alert-9', 'kelurahan', '3171', 'open', 1, ?, ?, 7, 2.5, ['xl-1'])",
                    [start, start])
        con.execute("INSERT INTO district_density_published VALUES (?, 'kelurahan', '3171', NULL, NULL, true, 'primary', 1.0)",
                    [start])
        publish_alerts(con)
        # Written today (processing time) for an alert of March 2020 (data time): it belongs to March's report.
        con.execute("INSERT INTO broadcast_requests (request_id, alert_id, transition, operator, cell_ids, message_id, "
                    "message_en, created_at) VALUES ('r1', 'alert-9', 'opened', 'xl', ['c1', 'c2'], 'id', 'en', now())")
        con.execute("INSERT INTO deletion_certificates VALUES ('cert-9', 'raw_drop', 'xl-1', ?, NULL, NULL, 10, ?, "
                    "'xl-events#retention:events.subscriber_key', '24h', ?, 'unlink+fsync(dir)', 'verified: absent', 't', NULL)",
                    [start, "d" * 64, start + timedelta(days=1)])
    out = tmp_path / "report.html"
    assert main(["audit", "report", "--from", "2020-03-31", "--to", "2020-04-01", "--out", str(out)]) == 0
    assert "report written" in capsys.readouterr().out
    document = out.read_text(encoding="utf-8")
    for heading in ("Drops received", "Checks run", "Alerts and their evidence", "Broadcast requests",
                    "Deletions and their certificates", "Audit chain verification"):
        assert heading in document
    assert "<script" not in document and "http://" not in document and "https://" not in document
    # Drops are files, not people: exact counts, so an auditor sees that tri sent 3 and none failed.
    for operator, count in (("telkomsel", 40), ("xl", 20), ("tri", 3)):
        assert re.search(rf"<td>{operator}</td><td>{count}</td><td>0</td>", document), operator
    assert re.search(r"<td>not_empty</td><td>duckdb</td><td>63</td><td>0</td>", document)
    # The alert's 7 observed people are hidden as the density publication hides them, and no ratio
    # (2.5) is printed beside anything that would give them back.
    alert_row = re.search(r"<td>alert-9</td>.*?</tr>", document)
    assert alert_row and "<td>hidden</td>" in alert_row.group(0) and "2.5" not in alert_row.group(0)
    assert "<td>7</td>" not in document
    assert re.search(r"<td>xl</td><td>opened</td><td>1</td><td>2</td><td>0</td>", document)
    assert "cert-9" in document and "OK: 0 records" in document
    assert main(["audit", "report", "--from", "2020-04-02", "--to", "2020-04-01"]) == 2
