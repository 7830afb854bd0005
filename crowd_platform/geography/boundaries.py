"""Districts: the configured boundary levels, their hierarchy, land area and population.

Configuration comes from the ``geography`` section of the platform config; nothing about
Jakarta or the national frame is hard-coded here. See docs/geography.md.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from crowd_platform.common.settings import BoundaryLevel, GeographySection


WGS84 = "EPSG:4326"


def read_boundaries(path: Path) -> gpd.GeoDataFrame:
    """Read a GeoJSON (optionally gzipped) in EPSG:4326."""
    source = f"/vsigzip/{path}" if path.suffix == ".gz" else str(path)
    frame = gpd.read_file(source)
    if frame.crs is None:
        frame = frame.set_crs(WGS84)
    return frame.to_crs(WGS84)


def _code_text(series: pd.Series) -> pd.Series:
    """Codes as text, whatever type the file stored them in (3171, 3171.0 and '3171' agree)."""
    def one(value: Any) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()
    return series.map(one).astype(object)


def _load_level(spec: BoundaryLevel, rank: int, area_crs: str) -> gpd.GeoDataFrame:
    raw = read_boundaries(spec.file)
    name_column = spec.name or spec.code
    missing = [column for column in (spec.code, name_column, spec.parent, spec.code_kemendagri)
               if column and column not in raw.columns]
    if missing:
        raise ValueError(f"{spec.file.name}: missing column(s) {missing} configured for level {spec.level}")
    geometry = shapely.make_valid(raw.geometry.values)
    frame = gpd.GeoDataFrame(
        {
            "district_code": _code_text(raw[spec.code]),
            "level": spec.level,
            "level_rank": rank,
            "name": raw[name_column].astype(str).values,
            "parent_code": _code_text(raw[spec.parent]) if spec.parent else None,
            "code_kemendagri": _code_text(raw[spec.code_kemendagri]) if spec.code_kemendagri else None,
            "is_admin_unit": raw[spec.is_admin_unit].fillna(True).astype(bool).values
            if spec.is_admin_unit in raw.columns else True,
        },
        geometry=geometry,
        crs=WGS84,
    )
    if frame["district_code"].isna().any():
        raise ValueError(f"{spec.file.name}: {int(frame['district_code'].isna().sum())} unit(s) without a code")
    if frame["district_code"].duplicated().any():
        # Multi-part units stored as several features: one unit per code.
        frame = frame.dissolve(by="district_code", as_index=False, aggfunc="first")
    frame["area_km2"] = frame.geometry.to_crs(area_crs).area.values / 1e6
    return frame


def hierarchy_frame(districts: pd.DataFrame) -> pd.DataFrame:
    """Finest unit -> its code at every level (itself included), by following parent codes.

    Columns: district_code_finest, level, district_code. A finest unit whose chain breaks
    (parent missing from the coarser file) simply has no row for the levels above the break.
    """
    ranks = sorted(districts["level_rank"].unique())
    level_of = districts.drop_duplicates("level_rank").set_index("level_rank")["level"].to_dict()
    parents = {
        rank: dict(zip(part["district_code"], part["parent_code"]))
        for rank, part in districts.groupby("level_rank")
    }
    finest = districts.loc[districts["level_rank"] == ranks[0], "district_code"].tolist()
    rows: list[tuple[str, str, str]] = []
    for code in finest:
        current: str | None = code
        for rank in ranks:
            if current is None or current not in parents[rank]:
                break
            rows.append((code, level_of[rank], current))
            current = parents[rank][current]
    return pd.DataFrame(rows, columns=["district_code_finest", "level", "district_code"])


def build_districts(config: GeographySection) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Every configured level with areas, land areas and population; plus the hierarchy.

    Population (Kemendagri, per unit of ``population.level``) goes to finer units in proportion
    to their land area (admin units only: water/forest get 0) and is summed for coarser units.
    """
    frames = [_load_level(spec, rank, config.area_crs) for rank, spec in enumerate(config.levels)]
    districts = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=WGS84)
    hierarchy = hierarchy_frame(districts)
    finest = districts[districts["level_rank"] == 0].set_index("district_code")
    finest_land = finest["area_km2"].where(finest["is_admin_unit"], 0.0)

    # Land area: finest = own area if admin; coarser = own area scaled by the land share of
    # its finest descendants (files of different levels may come from different simplifications).
    land = hierarchy.assign(
        land=hierarchy["district_code_finest"].map(finest_land),
        total=hierarchy["district_code_finest"].map(finest["area_km2"]),
    ).groupby(["level", "district_code"])[["land", "total"]].sum()
    share = (land["land"] / land["total"].where(land["total"] > 0)).rename("land_share")
    districts = districts.join(share, on=["level", "district_code"])
    districts["land_share"] = districts["land_share"].fillna(1.0)
    districts["land_area_km2"] = np.where(
        districts["is_admin_unit"], districts["area_km2"] * districts["land_share"], 0.0
    )
    districts.loc[districts["level_rank"] == 0, "land_area_km2"] = finest_land.reindex(
        districts.loc[districts["level_rank"] == 0, "district_code"]).values
    districts = districts.drop(columns="land_share")
    districts["population"] = _population(config, districts, hierarchy, finest_land)
    return districts, hierarchy


def _population(config: GeographySection, districts: pd.DataFrame, hierarchy: pd.DataFrame,
                finest_land: pd.Series) -> np.ndarray:
    if config.population.file is None or not config.population.level:
        return np.full(len(districts), np.nan)
    if config.population.level not in set(districts["level"]):
        raise ValueError(f"geography.population.level {config.population.level!r} is not a configured level")
    table = pd.read_csv(config.population.file, dtype={config.population.code_bps: str})
    totals = table.dropna(subset=[config.population.code_bps]).groupby(config.population.code_bps)[config.population.total].sum()
    at_level = hierarchy[hierarchy["level"] == config.population.level]
    finest_to_source = dict(zip(at_level["district_code_finest"], at_level["district_code"]))
    # Finest population = source total * (finest land / land of the source unit's finest units).
    finest_frame = pd.DataFrame({"land": finest_land})
    finest_frame["source"] = finest_frame.index.map(finest_to_source)
    source_land = finest_frame.groupby("source")["land"].transform("sum")
    finest_frame["population"] = (
        finest_frame["source"].map(totals).fillna(0.0) * finest_frame["land"] / source_land.where(source_land > 0)
    ).fillna(0.0)
    per_unit = hierarchy.assign(population=hierarchy["district_code_finest"].map(finest_frame["population"]))
    summed = per_unit.groupby(["level", "district_code"])["population"].sum()
    population = pd.Series(
        [summed.get((level, code), np.nan) for level, code in zip(districts["level"], districts["district_code"])],
        index=districts.index,
    )
    # Units above the source level (provinsi) are sums; the source level keeps its published total
    # (also for units without finer land, e.g. when the finest file misses a unit).
    source_rows = districts["level"] == config.population.level
    population[source_rows] = districts.loc[source_rows, "district_code"].map(totals).fillna(0.0).values
    population[~districts["is_admin_unit"].astype(bool)] = 0.0
    return population.fillna(0.0).to_numpy(dtype=float)


def districts_frame(con: duckdb.DuckDBPyConnection, level: str | None = None) -> gpd.GeoDataFrame:
    """Districts from the warehouse (finest level when ``level`` is None) as a GeoDataFrame (EPSG:4326)."""
    if level is None:
        where, params = "level_rank = (SELECT min(level_rank) FROM districts)", []
    else:
        where, params = "level = ?", [level]
    frame = con.execute(
        f"SELECT district_code, level, level_rank, name, parent_code, code_kemendagri, is_admin_unit, "
        f"area_km2, land_area_km2, population, geometry_wkb FROM districts WHERE {where} ORDER BY district_code",
        params,
    ).df()
    geometry = shapely.from_wkb([bytes(value) for value in frame.pop("geometry_wkb")])
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=WGS84)
