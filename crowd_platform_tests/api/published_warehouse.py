"""A warehouse with the real schema holding published rows written directly (no pipeline), for the
API tests and bench/bench_api.py (no test functions here).

Geography: a grid of kelurahan squares over Jakarta, ten per kecamatan, five kecamatan per
kab/kota. Density: one row per district, level and window; a kelurahan with fewer than
``SUPPRESS_BELOW`` people is suppressed, and so is a complementary sibling. Internal tables
(district_density, bts_presence, crowd_alerts, alert_transitions) hold rows whose values are
``SECRET`` markers, so a test can prove they never leave.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from crowd_platform.common import warehouse

T0 = datetime(2020, 4, 3, 2, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=15)
SECRET_PEOPLE = 987654321       # internal district_density people_estimate
SECRET_SUBSCRIBERS = 13579      # internal bts_presence subscribers
SECRET_MEDIAN = 24680.5         # internal crowd_alerts baseline median
SECRET_MARKERS = (str(SECRET_PEOPLE), str(SECRET_SUBSCRIBERS), "24680.5", "secret-site-0001", "SECRET_RUN")
SUPPRESS_BELOW = 60
LON0, LAT0, CELL = 106.70, -6.10, 0.01


def kelurahan_codes(count: int) -> list[str]:
    return [f"31{index:08d}" for index in range(count)]


def _square(column: int, row: int) -> bytes:
    from shapely.geometry import box

    lon, lat = LON0 + column * CELL, LAT0 - row * CELL
    return box(lon, lat - CELL, lon + CELL, lat).wkb


def build(path: Path, kelurahan: int = 40, windows: int = 4, seed: int = 1, alerts: bool = True) -> dict:
    """Write the warehouse at ``path``; returns what the tests need to know about it."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        warehouse.apply_schema(con)
        columns = max(1, int(kelurahan ** 0.5 * 1.3))
        codes = kelurahan_codes(kelurahan)
        kec = {code: f"K{index // 10:04d}" for index, code in enumerate(codes)}
        kab = {k: f"B{int(k[1:]) // 5:02d}" for k in set(kec.values())}
        districts = []
        for index, code in enumerate(codes):
            districts.append((code, "kelurahan", 0, f"Kelurahan {index}", kec[code], 1.0,
                              _square(index % columns, index // columns)))
        from shapely import union_all, from_wkb

        for level, rank, mapping, parent in (("kecamatan", 1, kec, kab), ("kabkota", 2, None, None)):
            children = {}
            source = [d for d in districts if d[1] == ("kelurahan" if level == "kecamatan" else "kecamatan")]
            for child in source:
                children.setdefault(child[4], []).append(child)
            for code, members in sorted(children.items()):
                geometry = union_all([from_wkb(member[6]) for member in members]).wkb
                districts.append((code, level, rank, f"{level.title()} {code}", parent.get(code) if parent else None,
                                  float(len(members)), geometry))
        con.executemany("INSERT INTO districts (district_code, level, level_rank, name, parent_code, is_admin_unit, "
                        "area_km2, geometry_wkb, land_area_km2, population) VALUES (?, ?, ?, ?, ?, true, ?, ?, ?, 123456)",
                        [[*row, row[5]] for row in districts])
        published, internal = [], []
        suppressed_cells = []
        for w in range(windows):
            start = T0 + w * STEP
            people = {code: rng.randint(10, 3000) for code in codes}
            hidden = {code for code, value in people.items() if value < SUPPRESS_BELOW}
            # complementary: a sibling of each hidden kelurahan
            for code in sorted(hidden):
                siblings = [c for c in codes if kec[c] == kec[code] and c not in hidden]
                if siblings:
                    hidden.add(siblings[0])
            totals = {}
            for code in codes:
                totals[kec[code]] = totals.get(kec[code], 0) + people[code]
            ktotals = {}
            for k, value in totals.items():
                ktotals[kab[k]] = ktotals.get(kab[k], 0) + value
            for code in codes:
                value = people[code]
                if code in hidden:
                    suppressed_cells.append((start, code))
                    published.append((start, "kelurahan", code, None, None, True, "primary" if value < SUPPRESS_BELOW else "complementary"))
                else:
                    published.append((start, "kelurahan", code, value, value / 1.0, False, None))
                internal.append((start, "kelurahan", code, float(SECRET_PEOPLE), float(SECRET_PEOPLE), float(SECRET_PEOPLE)))
            for k, value in totals.items():
                published.append((start, "kecamatan", k, value, value / 10.0, False, None))
            for b, value in ktotals.items():
                published.append((start, "kabkota", b, value, value / 50.0, False, None))
        _bulk(con, "district_density_published", ["window_start", "level", "district_code", "people_estimate",
                                                  "density_per_km2", "suppressed", "suppression"], published)
        _bulk(con, "district_density", ["window_start", "level", "district_code", "subscribers", "people_estimate",
                                        "density_per_km2"], internal)
        con.execute("UPDATE district_density SET operators_reporting = 5, drop_ids = ['d1'], run_id = 'SECRET_RUN'")
        con.execute("INSERT INTO bts_presence (window_start, operator, place_level, place_id, subscribers, location_rule, run_id) "
                    "VALUES (?, 'telkomsel', 'site', 'secret-site-0001', ?, 'last', 'SECRET_RUN')", [T0, SECRET_SUBSCRIBERS])
        con.execute("INSERT INTO site_places (site_id, place_id, lon, lat) VALUES ('telkomsel:s1', 'place-1', 106.75, -6.15)")
        info = {"codes": codes, "windows": [T0 + w * STEP for w in range(windows)], "suppressed": suppressed_cells,
                "kecamatan": sorted(set(kec.values())), "alerts": []}
        if alerts:
            opened = T0
            district_code = next(code for code in codes if (T0, code) not in suppressed_cells)
            district_people = next(row[3] for row in published if row[0] == T0 and row[2] == district_code)
            rows = [("A-district-1", "kelurahan", district_code, "Kelurahan X", "open", 2, opened, opened + STEP, None,
                     district_people, False),
                    ("A-site-1", "site", "place-1", "Place 1", "closed", 1, opened, opened + STEP, opened + 2 * STEP,
                     None, True)]
            con.executemany("INSERT INTO crowd_alerts_published (alert_id, level, place_id, place_name, state, severity, "
                            "opened_window, last_window, closed_window, people_estimate, evidence_suppressed, windows, "
                            "drop_ids, run_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 2, ['d1'], 'r1', now())", rows)
            con.executemany("INSERT INTO alert_transitions_published (alert_id, window_start, transition, people_estimate, "
                            "evidence_suppressed, run_id) VALUES (?, ?, ?, ?, ?, 'r1')",
                            [("A-district-1", opened, "open", district_people, False),
                             ("A-site-1", opened, "open", None, True),
                             ("A-site-1", opened + 2 * STEP, "close", None, True)])
            _internal_alerts(con)
            info["alerts"] = ["A-district-1", "A-site-1"]
            info["district_alert_place"] = district_code
    finally:
        con.close()
    return info


def _bulk(con, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Insert many rows at once, columns named (executemany is slow at tens of thousands of rows)."""
    import pyarrow as pa

    data = pa.table({name: [row[index] for row in rows] for index, name in enumerate(columns)})
    con.register("bulk_rows", data)
    try:
        names = ", ".join(columns)
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM bulk_rows")
    finally:
        con.unregister("bulk_rows")


def _internal_alerts(con) -> None:
    """Rows in the internal alert tables carrying the secret markers (columns by name only)."""
    for table, values in (("crowd_alerts", {"alert_id": "A-district-1", "median": SECRET_MEDIAN}),
                          ("alert_transitions", {"alert_id": "A-district-1", "median": SECRET_MEDIAN})):
        cols = con.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                           "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()
        row = {}
        for name, kind, nullable in cols:
            if name in values:
                row[name] = values[name]
            elif nullable == "YES":
                continue
            elif "TIMESTAMP" in kind:
                row[name] = T0
            elif kind in ("INTEGER", "BIGINT", "DOUBLE", "FLOAT"):
                row[name] = SECRET_PEOPLE
            elif kind == "BOOLEAN":
                row[name] = False
            elif kind.endswith("[]"):
                row[name] = ["SECRET_RUN"]
            else:
                row[name] = "SECRET_RUN"
        warehouse.insert_rows(con, table, row)
