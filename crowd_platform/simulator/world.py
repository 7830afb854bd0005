"""The simulated world: Jakarta kelurahan with population, and each operator's real cell sites.

Built once per process from reference_data/geo (BPS 2020 boundaries via HDX, Kemendagri 2025
population, OpenCelliD cells). Everything is in projected metres (UTM 48S, from
config/platform.yaml ``geography.area_crs``) so distances and nearest-cell look-ups are plain
Euclidean.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import polars as pl
from pyproj import Transformer
from scipy.spatial import cKDTree
from shapely import contains_xy

from crowd_platform.common.contracts import Contract, operator_contracts
from crowd_platform.common.settings import BoundaryLevel, Settings

# Central business kecamatan of Jakarta (Sudirman-Thamrin-Kuningan-Senayan corridor, Kota Tua
# excluded: it is mostly tourism): where office jobs concentrate.
CBD_KECAMATAN = (
    "Menteng",
    "Tanah Abang",
    "Setiabudi",
    "Gambir",
    "Kebayoran Baru",
    "Mampang Prapatan",
    "Sawah Besar",
    "Senen",
)
# Share of jobs in the CBD kecamatan; the rest follows residential population.
CBD_JOB_SHARE = 0.6
# Random home/work points per kelurahan, drawn once inside its polygon and re-used.
POINTS_PER_KELURAHAN = 256


@dataclass(frozen=True)
class OperatorNetwork:
    """One operator's cell sites: canonical ids, radio, coordinates and a KD-tree over them."""

    operator: str
    contract: Contract
    cell_ids: np.ndarray  # str, MCC-MNC-LAC-CI with the MNC spelled as in the contract
    radio: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    xy: np.ndarray  # (n, 2) metres
    tree: cKDTree

    def nearest(self, xy: np.ndarray) -> np.ndarray:
        """Index of the nearest cell site for each point (n, 2)."""
        if len(xy) == 0:
            return np.empty(0, dtype=np.int32)
        _, index = self.tree.query(xy, k=1)
        return index.astype(np.int32)

    def cells_frame(self) -> pl.DataFrame:
        """Canonical cell list (cell_id, lon, lat, radio) as dropped in the cells feed."""
        return pl.DataFrame(
            {"cell_id": self.cell_ids, "lon": self.lon, "lat": self.lat, "radio": self.radio}
        )


@dataclass(frozen=True)
class World:
    kelurahan: pl.DataFrame  # code, name, kec_code, kec_name, kab_code, population, cbd, x, y
    population_weight: np.ndarray  # share of residents per kelurahan (sums to 1)
    job_weight: np.ndarray  # share of jobs per kelurahan (sums to 1)
    points: np.ndarray  # (n_kelurahan, POINTS_PER_KELURAHAN, 2) metres, inside each polygon
    total_population: int
    networks: dict[str, OperatorNetwork]  # every operator with an events contract and cells
    market_share: dict[str, float]
    to_xy: Transformer
    to_lonlat: Transformer
    polygons: gpd.GeoDataFrame  # projected kelurahan polygons, for locating a point

    def locate(self, lon: float, lat: float) -> int | None:
        """Row of the kelurahan containing (lon, lat), or the nearest one."""
        x, y = self.to_xy.transform(lon, lat)
        from shapely.geometry import Point

        point = Point(x, y)
        hits = np.flatnonzero(self.polygons.geometry.contains(point).to_numpy())
        if len(hits):
            return int(hits[0])
        return int(self.polygons.geometry.distance(point).to_numpy().argmin())


def _cell_networks(settings: Settings, contracts: dict[str, Contract], to_xy: Transformer) -> dict[str, OperatorNetwork]:
    cells_path = settings.config.geography.cells_reference
    cells = pl.read_csv(cells_path, columns=["radio", "mcc", "net", "area", "cell", "lon", "lat"])
    networks: dict[str, OperatorNetwork] = {}
    for operator, contract in sorted(contracts.items()):
        # OpenCelliD stores MNC as an integer ("09" -> 9); the contract's spelling is canonical.
        spelled = {int(mnc): mnc for mnc in contract.mnc}
        mcc = str(contract.custom.get("mcc", "510"))
        own = (
            cells.filter(pl.col("net").is_in(list(spelled)))
            .with_columns(pl.col("net").replace_strict(spelled, return_dtype=pl.String).alias("mnc"))
            .with_columns(
                pl.concat_str([pl.lit(mcc), pl.col("mnc"), pl.col("area").cast(pl.String), pl.col("cell").cast(pl.String)], separator="-").alias("cell_id")
            )
            # OpenCelliD may list one cell twice (GSM and LTE entries): one site per cell id.
            .unique(subset=["cell_id"], keep="first", maintain_order=True)
            .sort("cell_id")
        )
        if own.height == 0:
            continue
        x, y = to_xy.transform(own["lon"].to_numpy(), own["lat"].to_numpy())
        xy = np.column_stack([x, y])
        networks[operator] = OperatorNetwork(
            operator=operator,
            contract=contract,
            cell_ids=own["cell_id"].to_numpy(),
            radio=own["radio"].to_numpy(),
            lon=own["lon"].to_numpy(),
            lat=own["lat"].to_numpy(),
            xy=xy,
            tree=cKDTree(xy),
        )
    return networks


def _population(settings: Settings, kelurahan: gpd.GeoDataFrame) -> np.ndarray:
    """Residents per kelurahan: kab/kota totals (Kemendagri) spread over land area (BPS codes)."""
    population = settings.config.geography.population
    table = pl.read_csv(population.file, schema_overrides={population.code_bps: pl.String})
    totals = dict(zip(table[population.code_bps].to_list(), table[population.total].to_list()))
    land = np.where(kelurahan["is_admin_unit"].to_numpy(dtype=bool), kelurahan["area_m2"].to_numpy(), 0.0)
    kab = kelurahan["kode_kabkota"].astype(str).to_numpy()
    residents = np.zeros(len(kelurahan))
    for code in np.unique(kab):
        members = kab == code
        area = land[members].sum()
        if area > 0 and code in totals:
            residents[members] = totals[code] * land[members] / area
    return residents


def _kelurahan_polygons(level: BoundaryLevel, crs: str) -> gpd.GeoDataFrame:
    """Kelurahan polygons in projected metres, in BPS code order, with their area (m2)."""
    frame = gpd.read_file(level.file).to_crs(crs)
    frame = frame.sort_values("kode_desa").reset_index(drop=True)
    frame["area_m2"] = frame.geometry.area
    return frame


def _job_weight(frame: gpd.GeoDataFrame, cbd: np.ndarray, population_weight: np.ndarray) -> np.ndarray:
    """Share of jobs per kelurahan: CBD_JOB_SHARE over CBD land area, the rest like residents."""
    cbd_area = np.where(cbd, frame["area_m2"].to_numpy(), 0.0)
    return CBD_JOB_SHARE * cbd_area / cbd_area.sum() + (1 - CBD_JOB_SHARE) * population_weight


def _point_pool(frame: gpd.GeoDataFrame, residents: np.ndarray, job_weight: np.ndarray, seed: int) -> np.ndarray:
    """Fixed pool of points inside each inhabited polygon; the seed makes the pool reproducible.

    Rejection sampling in the polygon's bounding box; a kelurahan with neither residents nor
    jobs gets its representative point only (and draws nothing from the generator).
    """
    rng = np.random.default_rng([seed, 0x9E0])
    points = np.zeros((len(frame), POINTS_PER_KELURAHAN, 2))
    for row, geometry in enumerate(frame.geometry):
        if residents[row] <= 0 and job_weight[row] <= 0:
            centroid = geometry.representative_point()
            points[row] = (centroid.x, centroid.y)
            continue
        minx, miny, maxx, maxy = geometry.bounds
        found: list[np.ndarray] = []
        count = 0
        while count < POINTS_PER_KELURAHAN:
            candidate = np.column_stack(
                [rng.uniform(minx, maxx, 4 * POINTS_PER_KELURAHAN), rng.uniform(miny, maxy, 4 * POINTS_PER_KELURAHAN)]
            )
            inside = candidate[contains_xy(geometry, candidate[:, 0], candidate[:, 1])]
            found.append(inside)
            count += len(inside)
        points[row] = np.concatenate(found)[:POINTS_PER_KELURAHAN]
    return points


def _kelurahan_table(frame: gpd.GeoDataFrame, level: BoundaryLevel, residents: np.ndarray, cbd: np.ndarray) -> pl.DataFrame:
    """World.kelurahan: codes and names, residents, CBD flag and representative point (m)."""
    centroids = frame.geometry.representative_point()
    return pl.DataFrame(
        {
            "code": frame[level.code].astype(str).to_numpy(),
            "name": frame[level.name].astype(str).to_numpy(),
            "kec_code": frame["kode_kec"].astype(str).to_numpy(),
            "kec_name": frame["kecamatan"].astype(str).to_numpy(),
            "kab_code": frame["kode_kabkota"].astype(str).to_numpy(),
            "population": residents,
            "cbd": cbd,
            "x": centroids.x.to_numpy(),
            "y": centroids.y.to_numpy(),
        }
    )


@lru_cache(maxsize=4)
def _build_world(config_path: str, contracts_dir: str, seed: int) -> World:
    settings = _settings_for(config_path, contracts_dir)
    geography = settings.config.geography
    crs = geography.area_crs
    to_xy = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    level = next(entry for entry in geography.levels if entry.level == "kelurahan")
    frame = _kelurahan_polygons(level, crs)
    residents = _population(settings, frame)
    cbd = frame["kecamatan"].isin(CBD_KECAMATAN).to_numpy() & frame["is_admin_unit"].to_numpy(dtype=bool)
    population_weight = residents / residents.sum()
    job_weight = _job_weight(frame, cbd, population_weight)
    contracts = operator_contracts(settings.contracts_dir, "events")
    networks = _cell_networks(settings, contracts, to_xy)
    shares = {operator: float(contracts[operator].market_share or 0.0) for operator in networks}
    return World(
        kelurahan=_kelurahan_table(frame, level, residents, cbd),
        population_weight=population_weight,
        job_weight=job_weight,
        points=_point_pool(frame, residents, job_weight, seed),
        total_population=int(round(residents.sum())),
        networks=networks,
        market_share=shares,
        to_xy=to_xy,
        to_lonlat=to_lonlat,
        polygons=frame[["kode_desa", "geometry"]],
    )


def _settings_for(config_path: str, contracts_dir: str) -> Settings:
    from crowd_platform.common.settings import config_at

    # The world does not depend on CROWD_HOME: one cached world serves every home.
    return Settings(home=Path("."), config=config_at(Path(config_path)), config_path=Path(config_path),
                    contracts_dir=Path(contracts_dir))


def build_world(settings: Settings, seed: int) -> World:
    """The world for these settings (cached: the demo and tests build it several times)."""
    return _build_world(str(settings.config_path), str(settings.contracts_dir), seed)
