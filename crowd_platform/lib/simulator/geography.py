"""Real Jakarta geography for the simulator: kelurahan, population, operators' cell sites.

Everything here is read from ``reference_data/geo/`` (attribution in its SOURCES.md) and the
operators' data contracts; nothing about places or operators is hard-coded except the
central business kecamatan that attract commuters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import polars as pl
import shapely
from pyproj import Transformer
from scipy.spatial import cKDTree

from crowd_platform.lib.contracts import Contract
from crowd_platform.lib.settings import PROJECT_ROOT

GEO_DIR = PROJECT_ROOT / "reference_data" / "geo"
KELURAHAN_FILE = GEO_DIR / "jakarta_kelurahan_bps2020_hdx.geojson"
POPULATION_FILE = GEO_DIR / "idn_penduduk_kabkota_kemendagri2025.csv"
CELLS_FILE = GEO_DIR / "ocid_mcc510_jakarta_cells.csv"

# Metric projection for distances and point sampling (UTM 48S, as config/platform.yaml).
PROJECTED_CRS = "EPSG:32748"

# Kecamatan (BPS names) that hold Jakarta's offices: the Golden Triangle (Setiabudi, Menteng,
# Tanah Abang, Kebayoran Baru, Mampang Prapatan), the old centre (Gambir, Sawah Besar,
# Taman Sari) and Kelapa Gading / Cempaka Putih. They attract a large share of commuters.
CBD_KECAMATAN = (
    "Setiabudi", "Menteng", "Tanah Abang", "Kebayoran Baru", "Mampang Prapatan",
    "Gambir", "Sawah Besar", "Taman Sari", "Kelapa Gading", "Cempaka Putih",
)

# Candidate home/work points pre-sampled per kelurahan: subscribers draw from this pool (plus
# a small jitter) so placing 10 M subscribers never runs a point-in-polygon test per person.
POINTS_PER_KELURAHAN = 512


@dataclass(frozen=True)
class Kelurahan:
    """Kelurahan table (admin units only) with projected geometry, population and point pools."""

    code: np.ndarray            # kode_desa (BPS), str
    name: np.ndarray
    kecamatan_code: np.ndarray
    kecamatan_name: np.ndarray
    population: np.ndarray      # people, from kab/kota totals spread by land area
    is_cbd: np.ndarray          # bool
    centroid_xy: np.ndarray     # (n, 2) metres, representative point inside the polygon
    point_pool: np.ndarray      # (n, POINTS_PER_KELURAHAN, 2) metres
    geometry: gpd.GeoSeries     # projected polygons, same order

    def locate(self, xy: np.ndarray) -> np.ndarray:
        """Index of the kelurahan containing each point (-1 outside every admin unit)."""
        points = shapely.points(xy[:, 0], xy[:, 1])
        tree = shapely.STRtree(self.geometry.values)
        point_index, polygon_index = tree.query(points, predicate="within")
        found = np.full(len(xy), -1, dtype=np.int64)
        found[point_index] = polygon_index
        return found


@dataclass(frozen=True)
class OperatorCells:
    """One operator's cell sites: canonical cell list and a KD-tree for nearest-cell lookup."""

    operator: str
    cells: pl.DataFrame           # cell_id, lon, lat, radio (canonical cells feed)
    cell_ids: pl.Series
    tree: cKDTree

    def nearest(self, xy: np.ndarray) -> np.ndarray:
        if len(xy) == 0:
            return np.empty(0, dtype=np.int64)
        _, index = self.tree.query(xy, k=1, workers=1)
        return index.astype(np.int64)


_to_projected = Transformer.from_crs("EPSG:4326", PROJECTED_CRS, always_xy=True)
_to_geographic = Transformer.from_crs(PROJECTED_CRS, "EPSG:4326", always_xy=True)


def project(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    x, y = _to_projected.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    return np.column_stack([x, y])


def unproject(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = _to_geographic.transform(xy[:, 0], xy[:, 1])
    return np.asarray(lon), np.asarray(lat)


def _sample_points(polygon, count: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform points inside a polygon by rejection sampling from its bounding box."""
    minx, miny, maxx, maxy = polygon.bounds
    shapely.prepare(polygon)
    accepted: list[np.ndarray] = []
    total = 0
    while total < count:
        batch = rng.uniform((minx, miny), (maxx, maxy), size=(count * 4, 2))
        inside = batch[shapely.contains_xy(polygon, batch[:, 0], batch[:, 1])]
        accepted.append(inside)
        total += len(inside)
    return np.concatenate(accepted)[:count]


@lru_cache(maxsize=2)
def load_kelurahan(kelurahan_file: Path = KELURAHAN_FILE, population_file: Path = POPULATION_FILE) -> Kelurahan:
    frame = gpd.read_file(kelurahan_file)
    frame = frame[frame["is_admin_unit"].astype(bool)].reset_index(drop=True)  # lakes get nobody
    frame = frame.to_crs(PROJECTED_CRS)
    population = pl.read_csv(population_file, schema_overrides={"kode_bps_2020": pl.Utf8})
    totals = dict(zip(population["kode_bps_2020"].to_list(), population["total"].to_list()))
    kabkota = frame["kode_kabkota"].astype(str).to_numpy()
    land_km2 = frame.geometry.area.to_numpy() / 1e6
    people = np.zeros(len(frame))
    for code in np.unique(kabkota):
        members = kabkota == code
        # BPS code joins the Kemendagri table (kode_bps_2020); spread by land area within it.
        people[members] = totals.get(code, 0) * land_km2[members] / land_km2[members].sum()
    rng = np.random.default_rng(20200401)  # fixed: the point pools are part of the map, not the run
    pools = np.stack([_sample_points(polygon, POINTS_PER_KELURAHAN, rng) for polygon in frame.geometry.values])
    representative = frame.geometry.representative_point()
    return Kelurahan(
        code=frame["kode_desa"].astype(str).to_numpy(),
        name=frame["kelurahan"].astype(str).to_numpy(),
        kecamatan_code=frame["kode_kec"].astype(str).to_numpy(),
        kecamatan_name=frame["kecamatan"].astype(str).to_numpy(),
        population=people,
        is_cbd=frame["kecamatan"].isin(CBD_KECAMATAN).to_numpy(),
        centroid_xy=np.column_stack([representative.x.to_numpy(), representative.y.to_numpy()]),
        point_pool=pools,
        geometry=frame.geometry,
    )


@lru_cache(maxsize=1)
def _cell_table(cells_file: Path) -> pl.DataFrame:
    return pl.read_csv(cells_file, columns=["radio", "mcc", "net", "area", "cell", "lon", "lat"])


def load_operator_cells(contract: Contract, cells_file: Path = CELLS_FILE) -> OperatorCells:
    """Cells whose MNC is one of the contract's ``mnc`` list; cell_id uses the contract's spelling."""
    operator = contract.operator or "unknown"
    mcc = str(contract.custom.get("mcc", "510"))
    spelling = {int(mnc): mnc for mnc in contract.mnc}  # OpenCelliD stores 9, the contract '09'
    table = _cell_table(cells_file).filter(pl.col("mcc") == int(mcc), pl.col("net").is_in(list(spelling)))
    cells = (
        table.with_columns(
            pl.concat_str(
                pl.lit(mcc), pl.col("net").replace_strict(spelling, return_dtype=pl.Utf8),
                pl.col("area").cast(pl.Utf8), pl.col("cell").cast(pl.Utf8), separator="-",
            ).alias("cell_id")
        )
        .unique("cell_id", keep="first", maintain_order=True)
        .sort("cell_id")
        .select("cell_id", "lon", "lat", "radio")
    )
    if cells.height == 0:
        raise ValueError(f"no cell sites for operator {operator} (MNC {', '.join(contract.mnc)}) in {cells_file.name}")
    xy = project(cells["lon"].to_numpy(), cells["lat"].to_numpy())
    return OperatorCells(operator=operator, cells=cells, cell_ids=cells["cell_id"], tree=cKDTree(xy))
