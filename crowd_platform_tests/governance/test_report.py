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


def _published_grid(home, t0, step) -> None:
    """A 3x3 grid of kelurahan in one kecamatan; two windows published (the second busier), two
    districts hidden; the internal table is busier in the first window; a kecamatan alert and a
    site alert in the period."""
    import shapely

    from crowd_platform.common.warehouse import apply_schema

    with connect(home / "warehouse.duckdb") as con:
        apply_schema(con)
        cells = {f"d{i}": shapely.box(106.8 + 0.01 * (i % 3), -6.2 + 0.01 * (i // 3),
                                      106.81 + 0.01 * (i % 3), -6.19 + 0.01 * (i // 3)) for i in range(9)}
        for code, cell in cells.items():
            con.execute("INSERT INTO districts (district_code, level, level_rank, name, parent_code, is_admin_unit, "
                        "area_km2, geometry_wkb, land_area_km2) VALUES (?, 'kelurahan', 0, ?, 'k1', true, 1.0, ?, 1.0)",
                        [code, f"Kel {code}", shapely.to_wkb(cell)])
        con.execute("INSERT INTO districts (district_code, level, level_rank, name, is_admin_unit, area_km2, geometry_wkb, "
                    "land_area_km2) VALUES ('k1', 'kecamatan', 1, 'Kec 1', true, 9.0, ?, 9.0)",
                    [shapely.to_wkb(shapely.union_all(list(cells.values())))])
        for window, extra, internal in ((t0 - step, 0, 10**9), (t0, 10, 7)):
            for number, code in enumerate(cells):
                hidden = code in ("d4", "d5")
                people = None if hidden else 100 + 50 * number + extra
                con.execute("INSERT INTO district_density_published VALUES (?, 'kelurahan', ?, ?, ?, ?, ?, 1.0)",
                            [window, code, people, people, hidden, "primary" if hidden else None])
                con.execute("INSERT INTO district_density (window_start, level, district_code, subscribers, "
                            "people_estimate, density_per_km2, operators_reporting, drop_ids, run_id) "
                            "VALUES (?, 'kelurahan', ?, ?, ?, ?, 5, ['x'], 'r')", [window, code, internal, internal, internal])
        con.execute("INSERT INTO site_places VALUES ('tsel:s1', 'place-1', 106.805, -6.195)")
        for alert_id, level, place in (("a-district", "kecamatan", "k1"), ("a-site", "site", "place-1")):
            con.execute("INSERT INTO crowd_alerts_published (alert_id, level, place_id, state, severity, opened_window, "
                        "last_window, people_estimate, evidence_suppressed) VALUES (?, ?, ?, 'open', 1, ?, ?, NULL, true)",
                        [alert_id, level, place, t0 - step, t0])


def test_report_map_of_the_busiest_published_window(tmp_path, monkeypatch):
    """The report embeds (base64 PNG) the published density of the busiest published window with
    the period's alert places, and says how suppression is drawn. The window is chosen on
    published values: the internal table, busier elsewhere, plays no part."""
    import base64
    import io

    import matplotlib.image

    from crowd_platform.governance.report import collect

    t0, step = datetime(2020, 3, 27, 4, 30, tzinfo=timezone.utc), timedelta(minutes=15)
    home = tmp_path / "home"
    monkeypatch.setenv("CROWD_HOME", str(home))
    settings = get_settings()
    settings.ensure_dirs()
    _published_grid(home, t0, step)
    with connect(settings.warehouse_path) as con:
        data = collect(con, settings, t0.date(), t0.date())
    drawn = data["map"]
    assert drawn["window"] == t0 and drawn["suppressed"] == 2 and drawn["shown"] == 7
    assert (drawn["district_alerts"], drawn["site_alerts"]) == (1, 1)
    out = tmp_path / "report.html"
    assert main(["audit", "report", "--from", "2020-03-27", "--to", "2020-03-27", "--out", str(out)]) == 0
    document = out.read_text(encoding="utf-8")
    assert "Map: busiest published window and the alert places" in document
    assert "2020-03-27 11:30–11:45 WIB" in document
    assert "suppressed (k-anonymity, k=15)" in document
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', document)
    assert len(images) == 1
    picture = matplotlib.image.imread(io.BytesIO(base64.b64decode(images[0])), format="png")
    assert picture.shape[0] > 300
    assert "<script" not in document and "http://" not in document and "https://" not in document


def test_report_without_districts_says_there_is_no_map(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    settings = get_settings()
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        con.execute("SELECT 1")
    out = tmp_path / "report.html"
    assert main(["audit", "report", "--from", "2020-03-27", "--to", "2020-03-27", "--out", str(out)]) == 0
    document = out.read_text(encoding="utf-8")
    assert "No map: no district boundaries in the warehouse." in document and "<img" not in document
