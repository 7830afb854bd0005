"""Helpers of the indicator tests: a tiny hand-made area: real DuckDB file, real Parquet lake files listed
in drops.lake_path, local days of Asia/Jakarta (UTC+7, config/platform.yaml).

K1 > KC1 > (L1, L2); K1 > KC2 > (L3). Telkomsel sites: S1 (c1) weights L1 0.7 / L2 0.3, so its
one district is L1; S2 (c2) -> L2; S3 (c3) -> L3. Indosat site IS1 (i1) -> L3 ('all' scope).
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl

WIB = timezone(timedelta(hours=7))
DAY = date(2020, 3, 10)          # local date (WIB): 2020-03-09 17:00 UTC .. 2020-03-10 17:00 UTC
PREVIOUS = date(2020, 3, 9)


def key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def wib(day: date, hour: int, minute: int = 0) -> datetime:
    """A local (WIB) time as a UTC datetime."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=WIB).astimezone(timezone.utc)


def window_of(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


class Lake:
    """Writes one drop per (operator, window) with the given events: (who, cell, UTC time)."""

    def __init__(self, home: Path, con):
        self.home, self.con, self.count = home, con, 0

    def add(self, operator: str, events: list[tuple[str, str, datetime]], key_id: str | None = None,
            status: str = "accepted") -> None:
        windows: dict[datetime, list] = {}
        for who, cell, moment in events:
            windows.setdefault(window_of(moment), []).append((who, cell, moment))
        for window, rows in windows.items():
            self.count += 1
            drop_id = f"{operator}-{self.count}"
            frame = pl.DataFrame(
                {"subscriber_key": [key(f"{operator}-{who}") for who, _, _ in rows],
                 "cell_id": [cell for _, cell, _ in rows],
                 "event_time": [moment for _, _, moment in rows],
                 "event_type": ["data"] * len(rows)},
                schema={"subscriber_key": pl.String, "cell_id": pl.String, "event_time": pl.Datetime("us", "UTC"),
                        "event_type": pl.String})
            relative = f"lake/events/date={window:%Y-%m-%d}/window={window:%H%M}/operator={operator}/{drop_id}.parquet"
            path = self.home / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(path)
            self.con.execute(
                "INSERT INTO drops (drop_id, operator, feed, window_start, window_end, status, lake_path, "
                "contract_version, key_id) VALUES (?, ?, 'events', ?, ?, ?, ?, '1.0.0', ?)",
                [drop_id, operator, window, window + timedelta(minutes=15), status, relative, key_id])


def build_geography(con) -> None:
    epoch = datetime(2020, 1, 1, tzinfo=timezone.utc)
    for cell, operator, site in [("c1", "telkomsel", "S1"), ("c2", "telkomsel", "S2"), ("c3", "telkomsel", "S3"),
                                 ("i1", "indosat", "IS1")]:
        con.execute("INSERT INTO bts_registry (cell_id, operator, site_id, lon, lat, valid_from, valid_to) "
                    "VALUES (?, ?, ?, 106.8, -6.2, ?, NULL)", [cell, operator, site, epoch])
    for code, level, rank, parent, area in [
        ("K1", "kabkota", 2, None, 10.0), ("KC1", "kecamatan", 1, "K1", 5.0), ("KC2", "kecamatan", 1, "K1", 5.0),
        ("L1", "kelurahan", 0, "KC1", 2.0), ("L2", "kelurahan", 0, "KC1", 3.0), ("L3", "kelurahan", 0, "KC2", 5.0),
    ]:
        con.execute("INSERT INTO districts (district_code, level, level_rank, parent_code, is_admin_unit, area_km2) "
                    "VALUES (?, ?, ?, ?, true, ?)", [code, level, rank, parent, area])
    for site, scope, code, weight in [
        ("S1", "telkomsel", "L1", 0.7), ("S1", "telkomsel", "L2", 0.3), ("S2", "telkomsel", "L2", 1.0),
        ("S3", "telkomsel", "L3", 1.0), ("IS1", "all", "L3", 1.0),
    ]:
        con.execute("INSERT INTO bts_district_weights VALUES (?, ?, ?, ?, 'test')", [site, scope, code, weight])


