"""Coverage and weights: Voronoi cells of sites clipped to land, apportioned to districts.

Also :func:`cells_covering`, which other domains use (broadcast requests: the cells of an
operator that serve some districts).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely


from crowd_platform.common.warehouse import read_sql
from crowd_platform.common.settings import GeographySection
from crowd_platform.geography.boundaries import WGS84

METHODS = ("voronoi_area", "point_in_polygon")
SCOPE_ALL = "all"
# Pieces smaller than 1 m² are slivers from reprojection round-off, not coverage.
MIN_PIECE_KM2 = 1e-6


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


def apportion(sites: pd.DataFrame, districts: gpd.GeoDataFrame, config: GeographySection,
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
    rows = con.execute(read_sql("geography/cells_covering"), {"operator": operator, "codes": codes, "at": at}).fetchall()
    return [row[0] for row in rows]
