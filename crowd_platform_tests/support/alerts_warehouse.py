"""Tiny synthetic warehouse for the alert, broadcast and evaluate tests (no test functions here).

Two kelurahan (K1, K2) in one kecamatan (C1) of one kab/kota (KB1); two operators with three
sites; a flat baseline (median 2000 people per kelurahan, 4000 per kecamatan, 100 subscribers
per site) and district_density / bts_presence rows whose values the test chooses per window.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from crowd_platform.common import warehouse

DAY = date(2020, 3, 23)
T0 = datetime(2020, 3, 23, 3, 0, tzinfo=timezone.utc)  # 10:00 WIB
STEP = timedelta(minutes=15)
K = 15  # config/platform.yaml privacy.k_anonymity

DISTRICTS = [
    # code, level, rank, name, parent
    ("K1", "kelurahan", 0, "Gambir", "C1"),
    ("K2", "kelurahan", 0, "Cideng", "C1"),
    ("C1", "kecamatan", 1, "Gambir Kec", "KB1"),
    ("KB1", "kabkota", 2, "Jakarta Pusat", None),
]
# cell_id, operator, site_id, lon, lat
CELLS = [
    ("510-10-1-101", "telkomsel", "telkomsel:s1", 106.8270, -6.1754),
    ("510-10-1-102", "telkomsel", "telkomsel:s1", 106.8270, -6.1754),
    ("510-11-2-201", "xl", "xl:s2", 106.8290, -6.1760),
    ("510-10-1-301", "telkomsel", "telkomsel:s3", 106.8100, -6.1700),
]
# site_id, scope, district, weight
WEIGHTS = [
    ("telkomsel:s1", "telkomsel", "K1", 1.0),
    ("xl:s2", "xl", "K1", 0.6),
    ("xl:s2", "xl", "K2", 0.4),
    ("telkomsel:s3", "telkomsel", "K2", 1.0),
]
BASELINE = {("kelurahan", "K1"): 2000.0, ("kelurahan", "K2"): 2000.0, ("kecamatan", "C1"): 4000.0,
            ("site", "telkomsel:s1"): 100.0, ("site", "xl:s2"): 100.0, ("site", "telkomsel:s3"): 100.0}
BASELINE_MAD = 0.05  # MAD as a fraction of the median


def window(index: int) -> datetime:
    return T0 + index * STEP


def drop_id(operator: str, index: int) -> str:
    return f"{operator}_events_{window(index):%Y%m%dT%H%MZ}_d1_abcdef012345"


def seed_reference(con, days: tuple[date, ...] = (DAY,)) -> None:
    """Districts, registry, weights and a flat baseline for the given days."""
    warehouse.apply_schema(con)
    for code, level, rank, name, parent in DISTRICTS:
        con.execute("INSERT INTO districts (district_code, level, level_rank, name, parent_code, is_admin_unit, area_km2)"
                    " VALUES (?, ?, ?, ?, ?, true, 1.0)", [code, level, rank, name, parent])
    for cell_id, operator, site_id, lon, lat in CELLS:
        con.execute("INSERT INTO bts_registry (cell_id, operator, site_id, lon, lat, radio, valid_from) "
                    "VALUES (?, ?, ?, ?, ?, 'LTE', TIMESTAMPTZ '2020-03-01 00:00:00+00')",
                    [cell_id, operator, site_id, lon, lat])
    for site_id, scope, district, weight in WEIGHTS:
        con.execute("INSERT INTO bts_district_weights VALUES (?, ?, ?, ?, 'voronoi_area')", [site_id, scope, district, weight])
    rows = []
    for day in days:
        for (level, place), median in BASELINE.items():
            for minute in range(0, 24 * 60, 15):
                rows.append([day, level, place, minute, median, median * BASELINE_MAD, 4, "weekly", "seed"])
    con.executemany("INSERT INTO density_baseline (day, level, place_id, time_of_day, median, mad, n_obs, kind, run_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def seed_completeness(con, start: datetime, arrived: tuple[str, ...], expected: tuple[str, ...] = ("telkomsel", "xl"),
                      shares: dict[str, float] | None = None, deadline: datetime | None = None) -> None:
    """The window's completeness record, as the density step writes it (both operators by default)."""
    shares = shares or {"telkomsel": 0.5, "xl": 0.5}
    expected_share = sum(shares[operator] for operator in expected)
    arrived_share = sum(shares[operator] for operator in arrived if operator in expected)
    missing = sorted(set(expected) - set(arrived))
    con.execute("DELETE FROM window_completeness WHERE window_start = ?", [start])
    con.execute("INSERT INTO window_completeness (window_start, expected_operators, arrived_operators, missing_operators, "
                "expected_share, arrived_share, completeness, complete, latency_deadline, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'seed')",
                [start, sorted(expected), sorted(arrived), missing, expected_share, arrived_share,
                 arrived_share / expected_share, not missing, deadline if missing else None])


def publish_window(con, start: datetime) -> None:
    """district_density_published for one window, by the density step's own k-anonymity."""
    from crowd_platform.density.districts import publish_density

    publish_density(con, K, start, start + timedelta(minutes=15))


def seed_windows(con, count: int, kelurahan_k1: dict[int, float] | None = None,
                 site_s1: dict[int, float] | None = None) -> None:
    """Density rows for windows 0..count-1: baseline values except where the test overrides K1 / site s1."""
    kelurahan_k1 = kelurahan_k1 or {}
    site_s1 = site_s1 or {}
    for index in range(count):
        start = window(index)
        drops = [drop_id("telkomsel", index), drop_id("xl", index)]
        for operator, drop in zip(("telkomsel", "xl"), drops):
            con.execute("INSERT INTO drops (drop_id, operator, feed, window_start, contract_id, contract_version, status) "
                        "VALUES (?, ?, 'events', ?, ?, '1.0.0', 'accepted')", [drop, operator, start, f"{operator}-events"])
        seed_completeness(con, start, arrived=("telkomsel", "xl"))
        k1 = kelurahan_k1.get(index, 2000.0)
        values = {("kelurahan", "K1"): k1, ("kelurahan", "K2"): 2000.0, ("kecamatan", "C1"): k1 + 2000.0,
                  ("kabkota", "KB1"): k1 + 2000.0}
        for (level, code), value in values.items():
            con.execute("INSERT INTO district_density (window_start, level, district_code, subscribers, people_estimate, "
                        "operators_reporting, drop_ids) VALUES (?, ?, ?, ?, ?, 2, ?)",
                        [start, level, code, value / 2, value, drops])
        publish_window(con, start)
        for site, operator in (("telkomsel:s1", "telkomsel"), ("xl:s2", "xl"), ("telkomsel:s3", "telkomsel")):
            value = site_s1.get(index, 100) if site == "telkomsel:s1" else 100
            con.execute("INSERT INTO bts_presence VALUES (?, ?, 'site', ?, ?, 'last', 'seed')",
                        [start, operator, site, int(value)])


def alerts_platform(tmp_path, monkeypatch, *, windows: int, kelurahan_k1: dict[int, float],
                    site_s1: dict[int, float] | None = None, url: str | None = None, max_attempts: int = 5):
    """A CrowdPlatform on the default config (with ``url`` as telkomsel's and xl's broadcast
    endpoint, fast retries) over a warehouse seeded with ``windows`` windows."""
    import yaml

    from crowd_platform.common.resources import CrowdPlatform
    from crowd_platform.common.settings import DEFAULT_CONFIG

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    if url:
        entry = {"url": url, "timeout_s": 2, "max_attempts": max_attempts, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
        config["broadcast"]["http"] = {"telkomsel": entry, "xl": entry}
    config_path = tmp_path / "platform.yaml"
    config_path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("CROWD_CONFIG", str(config_path))
    crowd = CrowdPlatform(home=str(tmp_path / "home"))
    with crowd.warehouse() as con:
        seed_reference(con)
        seed_windows(con, windows, kelurahan_k1=kelurahan_k1, site_s1=site_s1)
    return crowd
