"""The versioned cell registry: sites, screening of cell-list rows, OpenCelliD reference cells."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from crowd_platform.common import storage
from crowd_platform.common.contracts import contract_for, operator_event_contracts
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import read_sql

from crowd_platform.geography.boundaries import WGS84

METRES_PER_DEGREE = 111_320.0  # along a meridian (and the equator), WGS84 mean
WORLD_BOUNDS = (-180.0, -90.0, 180.0, 90.0)
OUTSIDE_AREA = "outside_area"


def site_id(operator: str, lon: float, lat: float, decimals: int = 4) -> str:
    """Co-located cells of one operator share a site: same lon/lat rounded to ``decimals`` (4 = ~11 m)."""
    return f"{operator}:{lon:.{decimals}f},{lat:.{decimals}f}"


def site_ids(operators: Sequence[str], lons: np.ndarray, lats: np.ndarray, decimals: int = 4) -> list[str]:
    return [site_id(o, x, y, decimals) for o, x, y in zip(operators, np.round(lons, decimals), np.round(lats, decimals))]


def area_bounds(districts: gpd.GeoDataFrame, margin_m: float) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the configured boundaries grown by ``margin_m`` metres: the
    registry's screening box, so a new area needs its boundary files only (no code)."""
    if districts.empty:
        raise ValueError("no district boundaries: materialize the districts asset first")
    west, south, east, north = (float(value) for value in districts.total_bounds)
    dlat = margin_m / METRES_PER_DEGREE
    widest = min(max(abs(south), abs(north)) + dlat, 89.0)  # a degree of longitude is shortest there
    dlon = margin_m / (METRES_PER_DEGREE * np.cos(np.radians(widest)))
    return (max(west - dlon, -180.0), max(south - dlat, -90.0), min(east + dlon, 180.0), min(north + dlat, 90.0))


def outside_area_mask(lons: np.ndarray, lats: np.ndarray, districts: gpd.GeoDataFrame,
                      area_crs: str, buffer_m: float) -> np.ndarray:
    """True where a point is farther than ``buffer_m`` from every district polygon (projected metres)."""
    if len(lons) == 0:
        return np.zeros(0, dtype=bool)
    projected = districts.geometry.to_crs(area_crs).values
    tree = shapely.STRtree(projected)
    points = gpd.GeoSeries(shapely.points(lons, lats), crs=WGS84).to_crs(area_crs).values
    hits = tree.query(points, predicate="dwithin", distance=buffer_m)
    inside = np.zeros(len(lons), dtype=bool)
    inside[np.unique(hits[0])] = True
    return ~inside


def mnc_operators(contracts_dir: Path) -> dict[int, tuple[str, str]]:
    """MNC (as integer) -> (operator, MNC as the contract spells it), from the operator contracts."""
    mapping: dict[int, tuple[str, str]] = {}
    for operator, contract in operator_event_contracts(contracts_dir).items():
        for mnc in contract.mnc:
            mapping[int(mnc)] = (operator, mnc)
    return mapping


def opencellid_cells(csv_path: Path, contracts_dir: Path) -> pd.DataFrame:
    """OpenCelliD rows -> canonical cell lists: operator, cell_id 'MCC-MNC-LAC-CI', lon, lat, radio.

    Rows whose MNC belongs to no operator contract are left out (they cannot be attributed).
    """
    raw = pd.read_csv(csv_path, usecols=["radio", "mcc", "net", "area", "cell", "lon", "lat"])
    mapping = mnc_operators(contracts_dir)
    known = raw["net"].isin(list(mapping))
    raw = raw[known]
    operator = raw["net"].map(lambda net: mapping[int(net)][0])
    mnc_text = raw["net"].map(lambda net: mapping[int(net)][1])
    cell_id = raw["mcc"].astype(str) + "-" + mnc_text + "-" + raw["area"].astype(str) + "-" + raw["cell"].astype(str)
    return pd.DataFrame({
        "operator": operator.values, "cell_id": cell_id.values,
        "lon": raw["lon"].astype(float).values, "lat": raw["lat"].astype(float).values,
        "radio": raw["radio"].astype(str).values,
    })


def registry_from_opencellid(csv_path: Path, contracts_dir: Path, valid_from: datetime,
                             decimals: int = 4, bounds: tuple[float, float, float, float] = WORLD_BOUNDS) -> pd.DataFrame:
    """A one-snapshot registry straight from the OpenCelliD reference CSV (benches, demos).

    Duplicated cell ids and coordinates outside ``bounds`` (e.g. :func:`area_bounds`; default: the
    world) or at null island are left out, as in ``bts_registry``.
    """
    cells = opencellid_cells(csv_path, contracts_dir)
    lon, lat = cells["lon"].to_numpy(), cells["lat"].to_numpy()
    west, south, east, north = bounds
    plausible = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north) & ~((lon == 0) & (lat == 0))
    unique = ~cells.duplicated(["operator", "cell_id"], keep=False)
    cells = cells[plausible & unique].reset_index(drop=True)
    cells["site_id"] = site_ids(cells["operator"].tolist(), cells["lon"].to_numpy(), cells["lat"].to_numpy(), decimals)
    cells["valid_from"] = valid_from
    cells["valid_to"] = pd.NaT
    cells["source_drop_id"] = f"opencellid:{csv_path.name}"
    return cells


def sites_of(registry: pd.DataFrame) -> pd.DataFrame:
    """Distinct sites (site_id, operator, lon, lat) of a registry; coordinates = the site's rounded point.
    An empty registry (no valid cell in the area) has no sites: an empty frame, not an error."""
    sites = registry.drop_duplicates("site_id")[["site_id", "operator"]].copy()
    if sites.empty:
        return sites.assign(lon=pd.Series(dtype=float), lat=pd.Series(dtype=float)).reset_index(drop=True)
    coordinates = sites["site_id"].str.split(":", n=1).str[1].str.split(",", expand=True).astype(float)
    sites["lon"], sites["lat"] = coordinates[0].values, coordinates[1].values
    return sites.sort_values("site_id").reset_index(drop=True)


# A cell global id MCC-MNC-LAC-CI: the shape of a cell id when an operator's cells contract
# declares no pattern of its own.
GLOBAL_CELL_ID = r"[0-9]{3}-[0-9]{2,3}-[0-9]+-[0-9]+"


def operator_cell_rules(contracts_dir: Path) -> pd.DataFrame:
    """Per operator with an event feed: the full-match pattern of its cell ids (its cells contract's
    ``cell_id`` pattern, else a global id) and whether its ids carry an MNC its contracts must
    declare (global ids of an operator whose contracts list MNCs). Opaque ids (FlowKit's
    ``JxDglNVk``) are the operator's own namespace: no MNC to check."""
    rows = []
    for operator, contract in operator_event_contracts(contracts_dir).items():
        cells = contract_for(contracts_dir, operator, "cells")
        pattern = None
        if cells is not None and any(spec.name == "cell_id" for spec in cells.columns):
            pattern = cells.column("cell_id").options.get("pattern")
        pattern = str(pattern).removeprefix("^").removesuffix("$") if pattern else GLOBAL_CELL_ID
        rows.append((operator, pattern, bool(contract.mnc)))
    return pd.DataFrame(rows, columns=["operator", "pattern", "checks_mnc"])


CELL_OBSERVATION_COLUMNS = ["drop_id", "operator", "window_start", "cell_id", "lon", "lat", "radio"]


def cell_drops(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Accepted cell-list drops, oldest first: (drop_id, operator, window_start, lake_path)."""
    return con.execute(
        "SELECT drop_id, operator, window_start, lake_path FROM drops "
        "WHERE feed = 'cells' AND status = 'accepted' AND lake_path IS NOT NULL ORDER BY window_start, drop_id"
    ).fetchall()


def cell_observations(con: duckdb.DuckDBPyConnection, settings: Settings, drops: list[tuple]) -> pd.DataFrame:
    """Every row of every cell-list drop, tagged with its drop, operator and window."""
    frames = [
        con.execute(
            "SELECT ? AS drop_id, ? AS operator, ?::TIMESTAMPTZ AS window_start, cell_id::VARCHAR AS cell_id, "
            "lon::DOUBLE AS lon, lat::DOUBLE AS lat, radio::VARCHAR AS radio FROM read_parquet(?)",
            [drop_id, operator, window_start, storage.duckdb_path(con, settings.resolve(lake_path))],
        ).df()
        for drop_id, operator, window_start, lake_path in drops
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CELL_OBSERVATION_COLUMNS)


def screen_cell_drops(con: duckdb.DuckDBPyConnection, settings: Settings, districts: gpd.GeoDataFrame,
                      config) -> tuple[list[tuple], pd.DataFrame]:
    """Cell-list rows with a reject ``reason`` (NULL when accepted): the SQL screen first
    (sql/geography/bts_registry_screen.sql, first matching reason wins; its box is the configured
    boundaries' bounding box plus ``bounds_margin_m``), then cells outside every finest district
    (beyond ``area_buffer_m``): both ``outside_area``."""
    west, south, east, north = area_bounds(districts, config.bounds_margin_m)
    operator_mnc = pd.DataFrame(
        [(operator, mnc) for _, (operator, mnc) in mnc_operators(settings.contracts_dir).items()],
        columns=["operator", "mnc"],
    )
    drops = cell_drops(con)
    con.register("cell_observations", cell_observations(con, settings, drops))
    con.register("operator_mnc", operator_mnc)
    con.register("operator_cell_rules", operator_cell_rules(settings.contracts_dir))
    screened = con.execute(read_sql("geography/bts_registry_screen"),
                           {"west": west, "east": east, "south": south, "north": north, "outside": OUTSIDE_AREA}).df()
    finest = districts[districts["level_rank"] == districts["level_rank"].min()]
    candidates = screened["reason"].isna()
    outside = outside_area_mask(screened.loc[candidates, "lon"].to_numpy(), screened.loc[candidates, "lat"].to_numpy(),
                                finest, config.area_crs, config.area_buffer_m)
    screened.loc[screened.index[candidates][outside], "reason"] = OUTSIDE_AREA
    return drops, screened


def physical_places(sites: pd.DataFrame, radius_m: float, area_crs: str) -> pd.DataFrame:
    """site_id -> place_id for co-located sites of any operator: sites whose centres are within
    ``radius_m`` of each other, transitively (single linkage), form one place, named by its
    smallest site_id so that the id is stable while the place's sites do not change."""
    columns = ["site_id", "place_id", "lon", "lat"]
    if sites.empty:
        return pd.DataFrame(columns=columns)
    sites = sites.sort_values("site_id").reset_index(drop=True)
    points = gpd.GeoSeries(gpd.points_from_xy(sites["lon"], sites["lat"]), crs=WGS84).to_crs(area_crs)
    left, right = shapely.STRtree(points.values).query(points.values, predicate="dwithin", distance=radius_m)
    parent = np.arange(len(sites))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for a, b in zip(left, right):
        first, second = root(a), root(b)
        if first != second:
            parent[max(first, second)] = min(first, second)  # the smaller index (site_id) names the place
    roots = np.array([root(index) for index in range(len(sites))])
    places = sites.assign(place_id=sites["site_id"].to_numpy()[roots])
    centres = places.groupby("place_id")[["lon", "lat"]].mean()
    return places[["site_id", "place_id"]].join(centres, on="place_id")[columns]
