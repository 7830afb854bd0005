"""Geography: districts, the versioned cell registry, Voronoi coverage and district weights.

Everything here is plain functions over GeoPandas/Shapely/DuckDB so that the Dagster assets
(crowd_platform/defs/geography), the benchmark and other domains share one implementation.
Configuration comes from the ``geography`` section of the platform config (CROWD_CONFIG);
nothing about Jakarta or the national frame is hard-coded. See docs/geography.md.

Public helpers other domains use:
- :func:`cells_covering` (broadcast requests: the cells of an operator that cover districts)
- :func:`districts_frame` (GeoDataFrame of one level, for maps)
- the ``district_hierarchy`` table (finest unit -> its code at every level), written by the
  ``districts`` asset.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from crowd_platform.common.contracts import operator_contracts
from crowd_platform.common.settings import Settings

WGS84 = "EPSG:4326"
# Indonesia's bounding box with a margin (Sabang to Merauke, Miangas to Rote).
INDONESIA_BBOX = (94.0, -11.5, 141.5, 6.5)
METHODS = ("voronoi_area", "point_in_polygon")
SCOPE_ALL = "all"
# Pieces smaller than 1 m² are slivers from reprojection round-off, not coverage.
MIN_PIECE_KM2 = 1e-6


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class LevelSpec:
    level: str
    file: Path
    code: str
    name: str
    parent: str | None
    code_kemendagri: str | None
    is_admin_unit: str = "is_admin_unit"


@dataclass(frozen=True)
class GeographyConfig:
    name: str
    levels: tuple[LevelSpec, ...]          # finest first
    population_file: Path | None
    population_code: str
    population_total: str
    population_level: str | None
    area_crs: str
    weights_method: str
    weight_by_population: bool
    cells_reference: Path | None
    area_buffer_m: float                   # cells this close to a district still count as inside
    move_threshold_m: float                # a cell further than this from its last position is a new version
    site_decimals: int                     # co-located cells: same rounded lon/lat -> one site

    @property
    def finest(self) -> LevelSpec:
        return self.levels[0]


def geography_config(settings: Settings) -> GeographyConfig:
    """The ``geography`` section of the active config (validated, paths resolved by settings)."""
    section = settings.config.geography
    levels = tuple(
        LevelSpec(level=item.level, file=item.file, code=item.code, name=item.name or item.code, parent=item.parent,
                  code_kemendagri=item.code_kemendagri, is_admin_unit=item.is_admin_unit)
        for item in section.levels
    )
    return GeographyConfig(
        name=section.name,
        levels=levels,
        population_file=section.population.file,
        population_code=section.population.code_bps,
        population_total=section.population.total,
        population_level=section.population.level,
        area_crs=section.area_crs,
        weights_method=section.weights_method,
        weight_by_population=section.weight_by_population,
        cells_reference=section.cells_reference,
        area_buffer_m=section.area_buffer_m,
        move_threshold_m=section.move_threshold_m,
        site_decimals=section.site_decimals,
    )


# ---------------------------------------------------------------- districts
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


def _load_level(spec: LevelSpec, rank: int, area_crs: str) -> gpd.GeoDataFrame:
    raw = read_boundaries(spec.file)
    missing = [column for column in (spec.code, spec.name, spec.parent, spec.code_kemendagri)
               if column and column not in raw.columns]
    if missing:
        raise ValueError(f"{spec.file.name}: missing column(s) {missing} configured for level {spec.level}")
    geometry = shapely.make_valid(raw.geometry.values)
    frame = gpd.GeoDataFrame(
        {
            "district_code": _code_text(raw[spec.code]),
            "level": spec.level,
            "level_rank": rank,
            "name": raw[spec.name].astype(str).values,
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


def build_districts(config: GeographyConfig) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
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


def _population(config: GeographyConfig, districts: pd.DataFrame, hierarchy: pd.DataFrame,
                finest_land: pd.Series) -> np.ndarray:
    if config.population_file is None or not config.population_level:
        return np.full(len(districts), np.nan)
    if config.population_level not in set(districts["level"]):
        raise ValueError(f"geography.population.level {config.population_level!r} is not a configured level")
    table = pd.read_csv(config.population_file, dtype={config.population_code: str})
    totals = table.dropna(subset=[config.population_code]).groupby(config.population_code)[config.population_total].sum()
    at_level = hierarchy[hierarchy["level"] == config.population_level]
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
    source_rows = districts["level"] == config.population_level
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


# ---------------------------------------------------------------- cell registry
def site_id(operator: str, lon: float, lat: float, decimals: int = 4) -> str:
    """Co-located cells of one operator share a site: same lon/lat rounded to ``decimals`` (4 = ~11 m)."""
    return f"{operator}:{lon:.{decimals}f},{lat:.{decimals}f}"


def site_ids(operators: Sequence[str], lons: np.ndarray, lats: np.ndarray, decimals: int = 4) -> list[str]:
    return [site_id(o, x, y, decimals) for o, x, y in zip(operators, np.round(lons, decimals), np.round(lats, decimals))]


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
    for operator, contract in operator_contracts(contracts_dir).items():
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
                             decimals: int = 4) -> pd.DataFrame:
    """A one-snapshot registry straight from the OpenCelliD reference CSV (benches, demos).

    Duplicated cell ids and impossible coordinates are left out, as in ``bts_registry``.
    """
    cells = opencellid_cells(csv_path, contracts_dir)
    lon, lat = cells["lon"].to_numpy(), cells["lat"].to_numpy()
    west, south, east, north = INDONESIA_BBOX
    plausible = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
    unique = ~cells.duplicated(["operator", "cell_id"], keep=False)
    cells = cells[plausible & unique].reset_index(drop=True)
    cells["site_id"] = site_ids(cells["operator"].tolist(), cells["lon"].to_numpy(), cells["lat"].to_numpy(), decimals)
    cells["valid_from"] = valid_from
    cells["valid_to"] = pd.NaT
    cells["source_drop_id"] = f"opencellid:{csv_path.name}"
    return cells


def sites_of(registry: pd.DataFrame) -> pd.DataFrame:
    """Distinct sites (site_id, operator, lon, lat) of a registry; coordinates = the site's rounded point."""
    sites = registry.drop_duplicates("site_id")[["site_id", "operator"]].copy()
    coordinates = sites["site_id"].str.split(":", n=1).str[1].str.split(",", expand=True).astype(float)
    sites["lon"], sites["lat"] = coordinates[0].values, coordinates[1].values
    return sites.sort_values("site_id").reset_index(drop=True)


# ---------------------------------------------------------------- coverage and weights
def land_units(districts: gpd.GeoDataFrame, area_crs: str) -> gpd.GeoDataFrame:
    """Finest admin units (people live there) in the projected CRS, with population density."""
    finest = districts[(districts["level_rank"] == districts["level_rank"].min()) & districts["is_admin_unit"]]
    finest = finest[["district_code", "population", "land_area_km2", "geometry"]].to_crs(area_crs)
    density = finest["population"] / finest["land_area_km2"].where(finest["land_area_km2"] > 0)
    finest = finest.assign(density=density.fillna(0.0).values)
    return finest.sort_values("district_code").reset_index(drop=True)


def voronoi_cells(points: np.ndarray, envelope: shapely.Geometry) -> np.ndarray:
    """One Voronoi polygon per point (points: (n, 2) projected, pairwise distinct), covering ``envelope``."""
    if len(points) == 1:
        return np.array([envelope], dtype=object)
    collection = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=envelope, ordered=True)
    return np.asarray(shapely.get_parts(collection), dtype=object)


@dataclass
class Apportionment:
    coverage: gpd.GeoDataFrame      # site_id, scope, lon, lat, area_km2, geometry (EPSG:4326)
    pieces: pd.DataFrame            # site_id, scope, district_code, area_km2 (Voronoi ∩ finest land unit)
    weights: pd.DataFrame | None = None   # site_id, scope, district_code, weight, method


def _project_points(lons: np.ndarray, lats: np.ndarray, area_crs: str) -> np.ndarray:
    points = gpd.GeoSeries(shapely.points(lons, lats), crs=WGS84).to_crs(area_crs)
    return shapely.get_coordinates(points.values)


def coverage_scope(sites: pd.DataFrame, scope: str, units: gpd.GeoDataFrame, area_crs: str) -> Apportionment:
    """Voronoi coverage of one scope's sites, clipped to land, and its pieces per finest land unit.

    Sites with identical coordinates (possible across operators in scope 'all') share one
    polygon. The clipped polygon is the union of its pieces, so the pieces' areas add up to
    the coverage area by construction.
    """
    xy = _project_points(sites["lon"].to_numpy(), sites["lat"].to_numpy(), area_crs)
    unique_xy, owner = np.unique(np.round(xy, 3), axis=0, return_inverse=True)
    owner = owner.ravel()
    unit_geoms = units.geometry.values
    xmin, ymin, xmax, ymax = shapely.total_bounds(np.concatenate([unit_geoms, shapely.points(unique_xy)]))
    margin = max(xmax - xmin, ymax - ymin, 1000.0)
    envelope = shapely.box(xmin - margin, ymin - margin, xmax + margin, ymax + margin)
    polygons = voronoi_cells(unique_xy, envelope)

    tree = shapely.STRtree(unit_geoms)
    poly_index, unit_index = tree.query(polygons, predicate="intersects")
    # A unit wholly inside a Voronoi polygon is its own piece: only border units need an overlay.
    inside_poly, inside_unit = tree.query(polygons, predicate="contains_properly")
    inside = np.isin(poly_index * len(unit_geoms) + unit_index, inside_poly * len(unit_geoms) + inside_unit)
    pieces = unit_geoms[unit_index].copy()
    pieces[~inside] = shapely.intersection(polygons[poly_index[~inside]], unit_geoms[unit_index[~inside]])
    piece_area = shapely.area(pieces) / 1e6
    keep = piece_area > MIN_PIECE_KM2
    poly_index, unit_index, pieces, piece_area = poly_index[keep], unit_index[keep], pieces[keep], piece_area[keep]

    clipped = np.empty(len(polygons), dtype=object)
    clipped[:] = shapely.Polygon()
    order = np.argsort(poly_index, kind="stable")
    boundaries = np.flatnonzero(np.diff(poly_index[order])) + 1
    for group in np.split(order, boundaries):
        if len(group):
            clipped[poly_index[group[0]]] = pieces[group[0]] if len(group) == 1 else shapely.coverage_union_all(pieces[group])
    clipped_area = np.bincount(poly_index, weights=piece_area, minlength=len(polygons))

    site_codes = sites["site_id"].to_numpy()
    coverage = gpd.GeoDataFrame(
        {"site_id": site_codes, "scope": scope, "lon": sites["lon"].to_numpy(), "lat": sites["lat"].to_numpy(),
         "area_km2": clipped_area[owner]},
        geometry=gpd.GeoSeries(clipped[owner], crs=area_crs).to_crs(WGS84).values, crs=WGS84,
    )
    unique_pieces = pd.DataFrame({"poly": poly_index, "district_code": units["district_code"].to_numpy()[unit_index],
                                  "area_km2": piece_area})
    site_pieces = pd.DataFrame({"site_id": site_codes, "poly": owner}).merge(unique_pieces, on="poly")
    return Apportionment(coverage=coverage, pieces=site_pieces.drop(columns="poly").assign(scope=scope))


def _containing_unit(points: np.ndarray, tree: shapely.STRtree, codes: np.ndarray) -> np.ndarray:
    """Code of the unit containing each point; on a border the lowest code; outside, the nearest."""
    result = np.empty(len(points), dtype=object)
    point_index, unit_index = tree.query(points, predicate="intersects")
    if len(point_index):
        hits = pd.DataFrame({"p": point_index, "code": codes[unit_index]}).groupby("p")["code"].min()
        result[hits.index.to_numpy()] = hits.to_numpy()
    unassigned = np.flatnonzero(pd.isna(result))
    if len(unassigned):
        nearest_point, nearest_unit = tree.query_nearest(points[unassigned], return_distance=False)
        found = pd.DataFrame({"p": unassigned[nearest_point], "code": codes[nearest_unit]}).groupby("p")["code"].min()
        result[found.index.to_numpy()] = found.to_numpy()
    return result


def district_weights(sites: pd.DataFrame, pieces: pd.DataFrame, units: gpd.GeoDataFrame, area_crs: str,
                     method: str, weight_by_population: bool) -> pd.DataFrame:
    """Per (site_id, scope) the share of its subscribers in each finest district; sums to 1.

    ``sites``: site_id, scope, lon, lat (one row per site and scope, e.g. bts_coverage).
    - voronoi_area: share of the clipped Voronoi area in each district (times population
      density when ``weight_by_population``; area alone if the coverage has no population);
    - point_in_polygon: weight 1 to the district containing the site (lowest code on a border).
    A site with no land in its polygon, or outside every district, goes whole to the nearest one.
    """
    if method not in METHODS:
        raise ValueError(f"unknown weights method {method!r}")
    columns = ["site_id", "scope", "district_code", "weight", "method"]
    if len(sites) == 0:
        return pd.DataFrame(columns=columns)
    codes = units["district_code"].to_numpy()
    tree = shapely.STRtree(units.geometry.values)
    keys = sites[["site_id", "scope"]].reset_index(drop=True)
    if method == "point_in_polygon":
        xy = _project_points(sites["lon"].to_numpy(), sites["lat"].to_numpy(), area_crs)
        weights = keys.assign(district_code=_containing_unit(shapely.points(xy), tree, codes), weight=1.0)
    else:
        weights = pieces[["site_id", "scope", "district_code", "area_km2"]].copy()
        if weight_by_population:
            density = dict(zip(units["district_code"], units["density"]))
            mass = weights["area_km2"] * weights["district_code"].map(density).fillna(0.0)
            total = mass.groupby([weights["site_id"], weights["scope"]]).transform("sum")
            weights["weight"] = mass.where(total > 0, weights["area_km2"])
        else:
            weights["weight"] = weights["area_km2"]
        weights = weights[weights["weight"] > 0].drop(columns="area_km2")
        weights["weight"] = weights["weight"] / weights.groupby(["site_id", "scope"])["weight"].transform("sum")
        missing = keys.merge(weights[["site_id", "scope"]].drop_duplicates(), how="left", indicator=True)
        missing = sites.reset_index(drop=True)[(missing["_merge"] == "left_only").to_numpy()]
        if len(missing):
            xy = _project_points(missing["lon"].to_numpy(), missing["lat"].to_numpy(), area_crs)
            nearest = missing[["site_id", "scope"]].assign(
                district_code=_containing_unit(shapely.points(xy), tree, codes), weight=1.0)
            weights = pd.concat([weights, nearest], ignore_index=True)
    return weights.assign(method=method)[columns].reset_index(drop=True)


def apportion(sites: pd.DataFrame, districts: gpd.GeoDataFrame, config: GeographyConfig,
              scopes: Iterable[str] | None = None) -> Apportionment:
    """Coverage, pieces and weights for every operator's sites (scope = operator) and all together."""
    units = land_units(districts, config.area_crs)
    operators = sorted(sites["operator"].unique())
    wanted = list(scopes) if scopes is not None else [*operators, SCOPE_ALL]
    parts = []
    for scope in wanted:
        scope_sites = sites if scope == SCOPE_ALL else sites[sites["operator"] == scope]
        if len(scope_sites):
            parts.append(coverage_scope(scope_sites.reset_index(drop=True), scope, units, config.area_crs))
    if parts:
        coverage = gpd.GeoDataFrame(pd.concat([part.coverage for part in parts], ignore_index=True), crs=WGS84)
        pieces = pd.concat([part.pieces for part in parts], ignore_index=True)
    else:
        coverage = gpd.GeoDataFrame({"site_id": [], "scope": [], "lon": [], "lat": [], "area_km2": []},
                                    geometry=gpd.GeoSeries([], crs=WGS84), crs=WGS84)
        pieces = pd.DataFrame(columns=["site_id", "district_code", "area_km2", "scope"])
    weights = district_weights(coverage[["site_id", "scope", "lon", "lat"]], pieces, units, config.area_crs,
                               config.weights_method, config.weight_by_population)
    return Apportionment(coverage=coverage, pieces=pieces, weights=weights)


# ---------------------------------------------------------------- helpers for other domains
def cells_covering(con: duckdb.DuckDBPyConnection, operator: str, district_codes: Iterable[str],
                   at: datetime | None = None) -> list[str]:
    """Cells of ``operator`` whose site serves any of the districts (weight > 0), sorted.

    ``district_codes`` may be of any level: they are resolved to finest units through
    ``district_hierarchy``. Only cell versions valid at ``at`` (default: now, i.e. open
    versions) are returned, so a decommissioned cell is never sent a broadcast.
    """
    codes = sorted(set(district_codes))
    if not codes:
        return []
    rows = con.execute(
        """
        SELECT DISTINCT r.cell_id
        FROM bts_registry r
        JOIN bts_district_weights w ON w.site_id = r.site_id AND w.scope = r.operator
        JOIN district_hierarchy h ON h.district_code_finest = w.district_code
        WHERE r.operator = ? AND w.weight > 0 AND list_contains(?, h.district_code)
          AND (CASE WHEN ?::TIMESTAMPTZ IS NULL THEN r.valid_to IS NULL
                    ELSE r.valid_from <= ?::TIMESTAMPTZ AND (r.valid_to IS NULL OR r.valid_to > ?::TIMESTAMPTZ) END)
        ORDER BY r.cell_id
        """,
        [operator, codes, at, at, at],
    ).fetchall()
    return [row[0] for row in rows]
