"""Geography assets: districts -> bts_registry -> bts_coverage -> bts_district_weights.

Unpartitioned: each asset rebuilds its tables from its inputs in one short transaction (the
registry from every accepted cell-list drop, so a re-run is idempotent). The heavy geometry
work happens before the warehouse connection is opened. See docs/geography.md.
"""


from datetime import datetime, timezone

import dagster as dg
import geopandas as gpd
import pandas as pd
import shapely

from crowd_platform.common import audit
from crowd_platform.geography import boundaries, coverage as coverage_model, registry as cell_registry
from crowd_platform.geography import maps
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.warehouse import WAREHOUSE_POOL, read_sql, transaction
from crowd_platform.common.asset_metadata import table_metadata

DISTRICT_COLUMNS = ["district_code", "level", "level_rank", "name", "parent_code", "code_kemendagri",
                    "is_admin_unit", "area_km2", "population", "geometry_wkb", "land_area_km2"]


def _wkb(geometry: gpd.GeoSeries) -> list[bytes]:
    return list(shapely.to_wkb(geometry.values))


def _replace(con, table: str, frame: pd.DataFrame, columns: list[str]) -> None:
    """DELETE + INSERT of a whole table from a DataFrame (caller holds the transaction)."""
    con.execute(f"DELETE FROM {table}")
    if len(frame):
        con.register("incoming_rows", frame[columns])
        con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM incoming_rows")
        con.unregister("incoming_rows")


def _load_districts(con) -> gpd.GeoDataFrame:
    frame = con.execute(
        "SELECT district_code, level, level_rank, is_admin_unit, area_km2, land_area_km2, population, geometry_wkb "
        "FROM districts"
    ).df()
    if frame.empty:
        raise dg.Failure("districts is empty: materialize the districts asset first")
    geometry = shapely.from_wkb([bytes(value) for value in frame.pop("geometry_wkb")])
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=boundaries.WGS84)


def _table_metadata(crowd: CrowdPlatform, table: str, lineage: dict | None) -> dict:
    with crowd.warehouse() as con:
        return table_metadata(con, table, lineage=lineage)


@dg.asset(
    kinds={"duckdb", "geopandas"},
    pool=WAREHOUSE_POOL,
    description="Administrative units at every configured level (geography.levels, finest first): BPS and "
                "Kemendagri codes, projected area and land area (km²), Kemendagri 2025 population distributed "
                "by land area, WKB geometry; plus district_hierarchy (finest unit -> code at every level) and a "
                "GeoParquet per level in the geo cache.",
)
def districts(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    config = settings.config.geography
    frame, hierarchy = boundaries.build_districts(config)
    for level, part in frame.groupby("level"):
        part.to_parquet(settings.geo_cache / f"districts_{level}.parquet")
    rows = pd.DataFrame(frame.drop(columns="geometry"))
    rows["geometry_wkb"] = _wkb(frame.geometry)
    with crowd.warehouse() as con:
        con.execute("ALTER TABLE districts ADD COLUMN IF NOT EXISTS land_area_km2 DOUBLE")
        with transaction(con):
            _replace(con, "districts", rows, DISTRICT_COLUMNS)
            _replace(con, "district_hierarchy", hierarchy, ["district_code_finest", "level", "district_code"])
            audit.append(con, "districts.rebuilt", purpose=settings.purpose, object_kind="table", object_id="districts",
                         run_id=context.run_id, details={"geography": config.name, "units": len(rows)})
    per_level = rows.groupby("level", sort=False).agg(units=("district_code", "size"), area_km2=("area_km2", "sum"),
                                                      population=("population", "sum"))
    context.log.info("districts: %s units over %s levels", len(rows), len(per_level))
    return dg.MaterializeResult(metadata={**_table_metadata(crowd, "districts", None),
        "geography": config.name,
        "area_crs": config.area_crs,
        "units_per_level": dg.MetadataValue.json({level: int(row.units) for level, row in per_level.iterrows()}),
        "land_area_km2": float(rows.loc[rows["level_rank"] == 0, "land_area_km2"].sum()),
        "population": float(rows.loc[rows["level_rank"] == 0, "population"].sum()),
        "water_or_forest_units": int((~rows["is_admin_unit"]).sum()),
    })


@dg.asset(
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["districts", "staged_events"],
    description="Versioned cell registry (valid_from/valid_to) from every accepted cell-list drop "
                "(full snapshots per operator). Moves > geography.move_threshold_m open a new version; "
                "co-located cells of an operator share a site; co-located sites of all operators "
                "(geography.colocation_radius_m) form one physical place (site_places). Rejected rows go to "
                "bts_registry_rejects.",
)
def bts_registry(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    config = settings.config.geography
    with crowd.warehouse() as con:
        drops, screened = cell_registry.screen_cell_drops(con, settings, _load_districts(con), config)
    accepted = screened[screened["reason"].isna()].drop(columns="reason")
    rejects = screened[screened["reason"].notna()]
    recorded_at = datetime.now(timezone.utc)

    with crowd.warehouse() as con:
        con.register("cell_accepted", accepted)
        registry = con.execute(read_sql("geography/bts_registry"), {"move_m": config.move_threshold_m}).df()
        registry["site_id"] = cell_registry.site_ids(registry["operator"].tolist(), registry["lon"].to_numpy(),
                                           registry["lat"].to_numpy(), config.site_decimals)
        reject_rows = pd.DataFrame({
            "cell_id": rejects["cell_id"], "operator": rejects["operator"], "reason": rejects["reason"],
            "source_drop_id": rejects["drop_id"], "recorded_at": recorded_at,
        })
        sites = registry.groupby("site_id", as_index=False)[["lon", "lat"]].mean()
        places = cell_registry.physical_places(sites, config.colocation_radius_m, config.area_crs)
        with transaction(con):
            _replace(con, "bts_registry", registry, ["cell_id", "operator", "site_id", "lon", "lat", "radio",
                                                     "valid_from", "valid_to", "source_drop_id"])
            _replace(con, "bts_registry_rejects", reject_rows, ["cell_id", "operator", "reason", "source_drop_id",
                                                                "recorded_at"])
            _replace(con, "site_places", places, ["site_id", "place_id", "lon", "lat"])
            reasons = {str(k): int(v) for k, v in rejects["reason"].value_counts().items()}
            audit.append(con, "bts_registry.rebuilt", purpose=settings.purpose, object_kind="table",
                         object_id="bts_registry", run_id=context.run_id,
                         details={"drops": [row[0] for row in drops], "versions": len(registry), "rejects": reasons})
    current = registry[registry["valid_to"].isna()]
    context.log.info("bts_registry: %s versions from %s drops, %s rejected rows", len(registry), len(drops), len(rejects))
    return dg.MaterializeResult(metadata={**_table_metadata(crowd, "bts_registry", {"cell_id": [("staged_events", "cell_id")], "lon": [("staged_events", "lon")], "lat": [("staged_events", "lat")]}),
        "cell_drops": len(drops),
        "versions": len(registry),
        "current_cells": len(current),
        "current_sites": int(current["site_id"].nunique()),
        "physical_places": int(places["place_id"].nunique()),
        "places_with_several_sites": int((places.groupby("place_id").size() > 1).sum()),
        "retired_versions": int(registry["valid_to"].notna().sum()),
        "rejected_rows": len(rejects),
        "rejects_by_reason": dg.MetadataValue.json(reasons),
        "current_cells_by_operator": dg.MetadataValue.json(
            {str(k): int(v) for k, v in current["operator"].value_counts().items()}),
    })


@dg.asset(
    kinds={"duckdb", "shapely"},
    pool=WAREHOUSE_POOL,
    deps=["bts_registry", "districts"],
    description="Voronoi tessellation of sites per operator (scope=<operator>) and of all operators' sites "
                "(scope='all'), clipped to land (admin units), with area in km² (projected). Covers every site "
                "that has a registry version, so events of retired cells still apportion. Map in metadata.",
)
def bts_coverage(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    config = settings.config.geography
    with crowd.warehouse(read_only=True) as con:
        registry = con.execute("SELECT DISTINCT site_id, operator FROM bts_registry").df()
        district_frame = _load_districts(con)
    result = coverage_model.apportion(cell_registry.sites_of(registry), district_frame, config)
    coverage = pd.DataFrame(result.coverage.drop(columns="geometry"))
    coverage["geometry_wkb"] = _wkb(result.coverage.geometry)
    # Pieces (Voronoi ∩ finest unit) let bts_district_weights switch method without re-tessellating.
    result.pieces.to_parquet(settings.geo_cache / "coverage_pieces.parquet")
    with crowd.warehouse() as con:
        with transaction(con):
            _replace(con, "bts_coverage", coverage, ["site_id", "scope", "lon", "lat", "area_km2", "geometry_wkb"])
            audit.append(con, "bts_coverage.rebuilt", purpose=settings.purpose, object_kind="table",
                         object_id="bts_coverage", run_id=context.run_id,
                         details={"polygons": len(coverage), "scopes": sorted(coverage["scope"].unique().tolist())})
    map_path = settings.geo_cache / "coverage_map.png"
    outlines = district_frame[district_frame["level_rank"] == district_frame["level_rank"].min()]
    maps.coverage_map(result.coverage, outlines, map_path, title=f"Coverage ({config.name})")
    per_scope = coverage.groupby("scope").agg(sites=("site_id", "size"), area_km2=("area_km2", "sum"))
    return dg.MaterializeResult(metadata={**_table_metadata(crowd, "bts_coverage", {"geometry_wkb": [("bts_registry", "lon"), ("bts_registry", "lat"), ("districts", "geometry_wkb")], "area_km2": [("districts", "geometry_wkb")]}),
        "polygons": len(coverage),
        "sites_per_scope": dg.MetadataValue.json({s: int(r.sites) for s, r in per_scope.iterrows()}),
        "area_km2_per_scope": dg.MetadataValue.json({s: round(float(r.area_km2), 3) for s, r in per_scope.iterrows()}),
        "map_path": dg.MetadataValue.path(str(map_path)),
        "map": dg.MetadataValue.md(maps.png_markdown(map_path, alt="coverage map")),
    })


@dg.asset(
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["bts_coverage"],
    description="Per (site_id, scope) the share of the site's subscribers in each finest-level district "
                "(geography.weights_method: voronoi_area, optionally population-weighted, or point_in_polygon). "
                "Weights of a site sum to 1.",
)
def bts_district_weights(context: dg.AssetExecutionContext, crowd: CrowdPlatform) -> dg.MaterializeResult:
    settings = crowd.settings
    config = settings.config.geography
    pieces_path = settings.geo_cache / "coverage_pieces.parquet"
    with crowd.warehouse(read_only=True) as con:
        sites = con.execute("SELECT site_id, scope, lon, lat FROM bts_coverage").df()
        district_frame = _load_districts(con)
    if not pieces_path.exists():
        raise dg.Failure(f"{pieces_path.name} is missing: materialize bts_coverage first")
    pieces = pd.read_parquet(pieces_path)
    units = coverage_model.land_units(district_frame, config.area_crs)
    weights = coverage_model.district_weights(sites, pieces, units, config.area_crs, config.weights_method,
                                   config.weight_by_population)
    with crowd.warehouse() as con:
        with transaction(con):
            _replace(con, "bts_district_weights", weights, ["site_id", "scope", "district_code", "weight", "method"])
            audit.append(con, "bts_district_weights.rebuilt", purpose=settings.purpose, object_kind="table",
                         object_id="bts_district_weights", run_id=context.run_id,
                         details={"rows": len(weights), "method": config.weights_method,
                                  "weight_by_population": config.weight_by_population})
    per_site = weights.groupby(["site_id", "scope"]).size()
    return dg.MaterializeResult(metadata={**_table_metadata(crowd, "bts_district_weights", {"weight": [("bts_coverage", "geometry_wkb"), ("districts", "geometry_wkb"), ("districts", "population")], "district_code": [("districts", "district_code")]}),
        "rows": len(weights),
        "method": config.weights_method,
        "weight_by_population": config.weight_by_population,
        "sites": len(per_site),
        "districts_reached": int(weights["district_code"].nunique()),
        "mean_districts_per_site": float(per_site.mean()) if len(per_site) else 0.0,
    })


geography_assets = [districts, bts_registry, bts_coverage, bts_district_weights]
