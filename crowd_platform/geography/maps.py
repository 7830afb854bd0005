"""Static maps (PNG, matplotlib Agg): coverage per operator and k-anonymised density choropleths.

Maps leave the platform (UI metadata, reports), so :func:`density_map` never draws a count of
k or less: such districts are hatched grey and labelled "suppressed", and the colour scale is
built from shown values only (its ticks can never reveal a suppressed value).
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # headless: assets and CLI run without a display

import geopandas as gpd  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.path import Path as PlotPath  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

SUPPRESSED_COLOR = "#d9d9d9"
NO_DATA_COLOR = "#ffffff"
ALERT_COLOR = "#1740ff"  # blue: stands out on the yellow-to-red density scale
MAX_METADATA_BYTES = 200_000


def _nice_length(km: float) -> float:
    """Largest 1/2/5 x 10^n not above ``km``."""
    if km <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(km))
    for step in (5, 2, 1):
        if step * power <= km:
            return step * power
    return power


def add_scale_bar(ax: plt.Axes) -> None:
    """A scale bar in km for a lon/lat (EPSG:4326) axis, about a fifth of its width."""
    xmin, xmax = ax.get_xlim()
    ymin, ymax = ax.get_ylim()
    km_per_degree = 111.32 * math.cos(math.radians((ymin + ymax) / 2))
    length_km = _nice_length((xmax - xmin) * km_per_degree / 5)
    length_deg = length_km / km_per_degree
    x0, y0 = xmin + (xmax - xmin) * 0.05, ymin + (ymax - ymin) * 0.05
    ax.plot([x0, x0 + length_deg], [y0, y0], color="black", linewidth=3, solid_capstyle="butt")
    label = f"{length_km:g} km"
    ax.text(x0 + length_deg / 2, y0 + (ymax - ymin) * 0.015, label, ha="center", va="bottom", fontsize=8)


def _finish(fig: plt.Figure, path: Path | None, dpi: int, compact: bool = False) -> Path | None:
    """Save (``compact``: as a palette PNG of at most 128 colours, a few tens of KB) and close."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if compact:
            from PIL import Image

            buffer = io.BytesIO()
            fig.savefig(buffer, dpi=dpi, bbox_inches="tight", format="png")
            buffer.seek(0)
            with Image.open(buffer) as image:
                small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
                small.save(path, format="PNG", optimize=True)
        else:
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def map_values(codes: pd.Series, values_by_code: Mapping[str, float | None], k: int,
               counts_by_code: Mapping[str, float | None]) -> tuple[pd.Series, pd.Series]:
    """(value or NaN, status) per code: status is "shown", "suppressed" or "no data".

    k applies to the COUNT behind a value (people in the district), never to the value drawn: a
    density of 3 people/km² over a large district may be thousands of people, and 40 people/km²
    over a small one may be 12. A value is shown only if its count is a number above k; a code
    with a value but no count is suppressed. Only "shown" values reach :func:`density_map`'s scale.
    """
    wanted = {str(code): value for code, value in values_by_code.items()}
    counts = {str(code): count for code, count in counts_by_code.items()}
    listed = codes.isin(set(wanted))
    raw = pd.to_numeric(codes.map(lambda code: wanted.get(code)), errors="coerce").astype(float)
    count = pd.to_numeric(codes.map(lambda code: counts.get(code)), errors="coerce").astype(float)
    shown = listed & raw.notna() & count.notna() & (count > k)
    status = pd.Series(np.where(shown, "shown", np.where(listed, "suppressed", "no data")), index=codes.index)
    return raw.where(shown), status


def outlying_mask(districts_gdf: gpd.GeoDataFrame) -> pd.Series:
    """True for districts apart from the main land mass (e.g. Kepulauan Seribu off Jakarta).

    The main land mass is the largest polygon of the union of all districts; a district that
    does not touch it (within ~1 km) is outlying. Outlying districts are drawn in an inset so
    that they do not stretch the frame. If they are a large share of the area (a national or an
    archipelago map), nothing is outlying and everything is framed together. Cached per geometry set.
    """
    geometries = districts_gdf.geometry
    key = (len(geometries), tuple(np.round(geometries.total_bounds, 6)) if len(geometries) else (),
           tuple(districts_gdf["district_code"].astype(str)) if "district_code" in districts_gdf else ())
    cached = _OUTLYING_CACHE.get(key)
    if cached is None:
        cached = np.zeros(len(geometries), dtype=bool)
        if len(geometries) > 1:
            union = shapely.union_all(shapely.make_valid(np.asarray(geometries.values)))
            parts = list(getattr(union, "geoms", [union]))
            parts = [part for part in parts if part.geom_type in ("Polygon", "MultiPolygon")]
            if len(parts) > 1:
                mainland = max(parts, key=lambda part: part.area).buffer(0.01)
                apart = ~np.asarray(shapely.intersects(np.asarray(geometries.values), mainland))
                area = np.asarray(shapely.area(np.asarray(geometries.values)))
                if apart.any() and area[apart].sum() < 0.2 * area.sum():
                    cached = apart
        _OUTLYING_CACHE.clear() if len(_OUTLYING_CACHE) > 8 else None
        _OUTLYING_CACHE[key] = cached
    return pd.Series(cached, index=districts_gdf.index)


_OUTLYING_CACHE: dict[tuple, np.ndarray] = {}


def _polygon_path(geometry: Any) -> PlotPath | None:
    """One compound matplotlib path (exteriors and holes) per (multi)polygon, in lon/lat."""
    if geometry is None or geometry.is_empty:
        return None
    polygons = getattr(geometry, "geoms", [geometry])
    vertices, codes = [], []
    for polygon in polygons:
        if polygon.geom_type != "Polygon" or polygon.is_empty:
            continue
        for ring in (polygon.exterior, *polygon.interiors):
            coords = np.asarray(ring.coords)[:, :2]
            if len(coords) < 3:
                continue
            ring_codes = np.full(len(coords), PlotPath.LINETO, dtype=PlotPath.code_type)
            ring_codes[0], ring_codes[-1] = PlotPath.MOVETO, PlotPath.CLOSEPOLY
            vertices.append(coords)
            codes.append(ring_codes)
    if not vertices:
        return None
    return PlotPath(np.concatenate(vertices), np.concatenate(codes))


def _add_polygons(ax: plt.Axes, geometries: Iterable[Any], **style: Any) -> None:
    """Polygons as one PathCollection (much cheaper than GeoDataFrame.plot, which redraws the figure)."""
    colors = style.pop("facecolors", None)
    paths, kept = [], []
    for index, geometry in enumerate(geometries):
        path = _polygon_path(geometry)
        if path is not None:
            paths.append(path)
            kept.append(index)
    if not paths:
        return
    if colors is not None and not isinstance(colors, str):
        style["facecolors"] = [colors[index] for index in kept]
    elif colors is not None:
        style["facecolors"] = colors
    ax.add_collection(PathCollection(paths, **style), autolim=False)


def _draw_layers(ax: plt.Axes, frame: gpd.GeoDataFrame, norm: Normalize | None, cmap: str,
                 alert_shapes: gpd.GeoSeries | None, alert_points: list[tuple[float, float]],
                 edge_width: float = 0.3) -> None:
    listed, shown = frame["status"] != "no data", frame["status"] == "shown"
    suppressed = frame["status"] == "suppressed"
    _add_polygons(ax, frame.geometry[~listed], facecolors=NO_DATA_COLOR, edgecolors="#bbbbbb", linewidths=edge_width)
    _add_polygons(ax, frame.geometry[suppressed], facecolors=SUPPRESSED_COLOR, edgecolors="#999999",
                  linewidths=edge_width, hatch="///")
    if shown.any() and norm is not None:
        colours = plt.get_cmap(cmap)(norm(frame.loc[shown, "value"].to_numpy(dtype=float)))
        _add_polygons(ax, frame.geometry[shown], facecolors=list(colours), edgecolors="#666666", linewidths=edge_width)
    if alert_shapes is not None and len(alert_shapes):
        _add_polygons(ax, alert_shapes, facecolors="none", edgecolors=ALERT_COLOR, linewidths=2.0, zorder=4)
    if alert_points:
        xs, ys = zip(*alert_points)
        ax.scatter(xs, ys, s=70, facecolors="none", edgecolors=ALERT_COLOR, linewidths=2.0, zorder=5)
        ax.scatter(xs, ys, s=6, color=ALERT_COLOR, zorder=5)


def density_map(
    districts_gdf: gpd.GeoDataFrame,
    values_by_code: Mapping[str, float | None],
    k: int,
    alert_codes: Iterable[str] = (),
    title: str = "",
    path: str | Path | None = None,
    *,
    counts_by_code: Mapping[str, float | None],
    value_label: str = "people per km²",
    dpi: int = 110,
    alert_shapes: gpd.GeoSeries | None = None,
    alert_points: Iterable[tuple[float, float]] = (),
    inset_outlying: bool = False,
    note: str = "",
    figsize: tuple[float, float] = (8, 7),
    compact: bool = False,
) -> Path:
    """Choropleth of ``values_by_code`` over ``districts_gdf`` (columns district_code, geometry; EPSG:4326).

    - a listed code whose count (``counts_by_code``, people) is <= ``k`` or missing, or whose value is
      None or NaN, is drawn as "suppressed (≤ k)", hatched grey, without a number or a colour;
      codes absent from ``values_by_code`` are "no data" (white);
    - districts in ``alert_codes`` and the polygons ``alert_shapes`` (alerts at any level) are
      outlined in blue; ``alert_points`` (lon, lat: site alerts) are blue rings;
    - ``inset_outlying``: districts apart from the main land mass (:func:`outlying_mask`) go to an
      inset, so the frame is the mainland;
    - legend (colour bar of shown values only + suppressed / no data / alert patches), scale bar, title.
    Callers pass k-anonymised values (e.g. district_density_published); the k test here is a
    second line of defence. ``compact`` writes a palette PNG (small enough for UI metadata).
    Returns the PNG path.
    """
    if path is None:
        raise ValueError("density_map needs a path to write the PNG to")
    frame = districts_gdf[["district_code", "geometry"]].copy()
    frame["district_code"] = frame["district_code"].astype(str)
    frame["value"], frame["status"] = map_values(frame["district_code"], values_by_code, k, counts_by_code)
    shown = frame["status"] == "shown"
    alert_set = {str(code) for code in alert_codes}
    shapes = frame.loc[frame["district_code"].isin(alert_set), "geometry"]
    if alert_shapes is not None and len(alert_shapes):
        shapes = pd.concat([shapes, gpd.GeoSeries(alert_shapes, crs=frame.crs)])
    shapes = gpd.GeoSeries(shapes, crs=frame.crs) if len(shapes) else None
    points = [(float(lon), float(lat)) for lon, lat in alert_points]

    cmap = "YlOrRd"
    norm = None
    if shown.any():
        values = frame.loc[shown, "value"]
        low, high = float(values.min()), float(values.max())
        norm = Normalize(vmin=low, vmax=high if high > low else low + 1.0)

    outlying = outlying_mask(frame) if inset_outlying else pd.Series(False, index=frame.index)
    main = frame[~outlying]
    xmin, ymin, xmax, ymax = main.total_bounds
    if not all(math.isfinite(value) for value in (xmin, ymin, xmax, ymax)):
        raise ValueError("the districts have no geometry to draw")
    fig, ax = plt.subplots(figsize=figsize)
    _draw_layers(ax, main, norm, cmap, shapes, points)
    pad_x, pad_y = (xmax - xmin) * 0.02, (ymax - ymin) * 0.02
    ax.set_xlim(xmin - pad_x, xmax + pad_x)
    ax.set_ylim(ymin - pad_y, ymax + pad_y)
    if norm is not None:
        mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(mappable, ax=ax, shrink=0.6, label=value_label, pad=0.01)
    handles = [
        Patch(facecolor=SUPPRESSED_COLOR, edgecolor="#999999", hatch="///",
              label=f"suppressed (k-anonymity, ≤ {k})"),
        Patch(facecolor=NO_DATA_COLOR, edgecolor="#bbbbbb", label="no data"),
        Patch(facecolor="none", edgecolor=ALERT_COLOR, linewidth=2, label="crowd alert (district)"),
    ]
    if points:
        handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="none",
                              markeredgecolor=ALERT_COLOR, markeredgewidth=2, markersize=8,
                              label="crowd alert (site)"))
    ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.9)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
    ax.set_aspect("equal")
    add_scale_bar(ax)
    if outlying.any():
        inset = ax.inset_axes([0.0, 0.62, 0.24, 0.33])
        _draw_layers(inset, frame[outlying], norm, cmap, shapes, points, edge_width=1.2)
        ixmin, iymin, ixmax, iymax = frame[outlying].total_bounds
        ipad = max(ixmax - ixmin, iymax - iymin) * 0.08 + 0.005
        inset.set_xlim(ixmin - ipad, ixmax + ipad)
        inset.set_ylim(iymin - ipad, iymax + ipad)
        inset.set_aspect("equal")
        inset.set_xticks([])
        inset.set_yticks([])
        inset.set_xlabel("")
        inset.set_ylabel("")
        inset.set_facecolor("#f7fbff")
        inset.text(0.5, 0.01, "outlying islands\n(inset, own scale)", transform=inset.transAxes,
                   fontsize=6, ha="center", va="bottom", color="#333333")
    if note:
        ax.text(0.0, -0.01, note, transform=ax.transAxes, fontsize=6, color="#555555", ha="left", va="top")
    return _finish(fig, Path(path), dpi, compact=compact)  # type: ignore[return-value]


def coverage_map(coverage: gpd.GeoDataFrame, districts_gdf: gpd.GeoDataFrame, path: str | Path,
                 title: str = "Coverage (Voronoi of sites)", dpi: int = 80) -> Path:
    """One panel per scope (each operator, then 'all'): Voronoi polygons over district outlines.

    Each panel frames the main land mass; districts apart from it (:func:`outlying_mask`, e.g.
    Kepulauan Seribu, 40-80 km off Jakarta) and their sites go to an inset at its own scale, as
    in :func:`density_map`, so the islands no longer shrink the city to a corner of the panel."""
    scopes = sorted(scope for scope in coverage["scope"].unique() if scope != "all")
    if "all" in set(coverage["scope"]):
        scopes.append("all")
    columns = min(3, max(1, len(scopes)))
    rows = max(1, math.ceil(len(scopes) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.6 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    outlying = outlying_mask(districts_gdf) if len(districts_gdf) else pd.Series(False, index=districts_gdf.index)
    mainland, islands = districts_gdf[~outlying], districts_gdf[outlying]
    on_islands = (coverage.geometry.intersects(shapely.union_all(np.asarray(islands.geometry.values)))
                  if len(islands) else pd.Series(False, index=coverage.index))
    for index, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if index >= len(scopes):
            continue
        scope = scopes[index]
        part = coverage[(coverage["scope"] == scope) & ~on_islands]
        # Room above the mainland (the sea off the north coast) for the islands' inset.
        _coverage_panel(ax, mainland if len(mainland) else districts_gdf, part, colors(index % 10), line_width=0.4,
                        top_room=0.4 if len(islands) else 0.0)
        ax.set_title(f"{scope}: {int((coverage['scope'] == scope).sum())} sites", fontsize=9)
        add_scale_bar(ax)
        if len(islands):
            inset = ax.inset_axes([0.0, 0.7, 0.3, 0.3])
            _coverage_panel(inset, islands, coverage[(coverage["scope"] == scope) & on_islands], colors(index % 10),
                            line_width=0.6)
            inset.set_xticks([])
            inset.set_yticks([])
            inset.set_facecolor("#f7fbff")
            for spine in inset.spines.values():
                spine.set_edgecolor("#999999")
            inset.text(0.5, 0.01, "outlying islands\n(inset, own scale)", transform=inset.transAxes,
                       fontsize=5, ha="center", va="bottom", color="#333333")
    fig.suptitle(title, fontsize=11)
    return _finish(fig, Path(path), dpi)  # type: ignore[return-value]


def _coverage_panel(ax: plt.Axes, outlines: gpd.GeoDataFrame, part: gpd.GeoDataFrame, color: Any,
                    line_width: float, top_room: float = 0.0) -> None:
    """District outlines, the Voronoi polygons and sites among them, framed on the outlines
    (``top_room``: extra height above them, as a share of theirs)."""
    xmin, ymin, xmax, ymax = outlines.total_bounds
    pad = max(xmax - xmin, ymax - ymin) * 0.03 + 0.002
    xmin, ymin, xmax, ymax = xmin - pad, ymin - pad, xmax + pad, ymax + pad + (ymax - ymin) * top_room
    # PathCollections, not GeoDataFrame.plot: ~3 000 Voronoi polygons per panel draw in a blink.
    _add_polygons(ax, outlines.geometry, facecolors="#f2f2f2", edgecolors="#bbbbbb", linewidths=0.2)
    shown = part.cx[xmin:xmax, ymin:ymax] if len(part) else part
    if len(shown):
        _add_polygons(ax, shown.geometry, facecolors="none", edgecolors=[color], linewidths=line_width)
        inside = shown[(shown["lon"] >= xmin) & (shown["lon"] <= xmax) & (shown["lat"] >= ymin) & (shown["lat"] <= ymax)]
        ax.scatter(inside["lon"], inside["lat"], s=0.5, color="black", linewidths=0, zorder=3)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.set_xlabel("")
    ax.set_ylabel("")


def png_markdown(path: Path, alt: str = "map", max_bytes: int = MAX_METADATA_BYTES) -> str:
    """Markdown with the PNG inline as a data URI (Dagster UI metadata); a note instead if too big."""
    payload = Path(path).read_bytes()
    if len(payload) > max_bytes:
        return f"_{alt}: {len(payload) // 1024} KB, too large to inline; see `{path}`_"
    encoded = base64.b64encode(payload).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"


def png_data_uri(path: Path) -> str:
    """``data:image/png;base64,...`` of a PNG (self-contained HTML: the auditor report)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Maps of the publication, read from the warehouse. They read district_density_published and
# crowd_alerts_published only (sql/geography/maps_*.sql), never the internal tables.
# ---------------------------------------------------------------------------------------------

@dataclass
class PublishedMap:
    """A map of the publication written to ``path`` (None when there was nothing to draw)."""

    path: Path | None
    window: datetime | None
    level: str | None
    districts_shown: int = 0
    districts_suppressed: int = 0
    district_alerts: int = 0
    site_alerts: int = 0
    seconds: float = 0.0
    alert_ids: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size if self.path is not None and self.path.exists() else 0

    def markdown(self, alt: str) -> str:
        if self.path is None:
            return f"_{alt}: no published density in this range_"
        return png_markdown(self.path, alt=alt)

    def summary(self) -> dict[str, Any]:
        """Counts of districts and alerts drawn (no count of people), for metadata."""
        return {"window": self.window.isoformat() if self.window else None, "level": self.level,
                "districts_shown": self.districts_shown, "districts_suppressed": self.districts_suppressed,
                "district_alerts": self.district_alerts, "site_alerts": self.site_alerts,
                "png_bytes": self.bytes, "seconds": round(self.seconds, 3)}


_DISTRICTS_CACHE: dict[tuple, gpd.GeoDataFrame] = {}


def finest_level(con: Any) -> str | None:
    row = con.execute("SELECT level FROM districts ORDER BY level_rank LIMIT 1").fetchone()
    return row[0] if row else None


def map_districts(con: Any, level: str) -> gpd.GeoDataFrame:
    """Polygons of ``level`` (district_code, name, geometry; EPSG:4326), cached while the table is unchanged."""
    from crowd_platform.common.warehouse import read_sql

    fingerprint = con.execute("SELECT count(*), sum(area_km2), max(district_code) FROM districts WHERE level = ?",
                              [level]).fetchone()
    key = (level, *fingerprint)
    cached = _DISTRICTS_CACHE.get(key)
    if cached is None:
        frame = con.execute(read_sql("geography/maps_districts"), {"level": level}).df()
        geometry = shapely.from_wkb([bytes(value) for value in frame.pop("geometry_wkb")])
        cached = gpd.GeoDataFrame(frame, geometry=geometry, crs="EPSG:4326")
        if len(_DISTRICTS_CACHE) > 8:
            _DISTRICTS_CACHE.clear()
        _DISTRICTS_CACHE[key] = cached
    return cached


def last_published_window(con: Any, lo: datetime, hi: datetime) -> datetime | None:
    from crowd_platform.common.warehouse import read_sql

    row = con.execute(read_sql("geography/maps_last_published_window"), {"lo": lo, "hi": hi}).fetchone()
    return row[0] if row and row[0] is not None else None


def local_label(moment: datetime, tz_name: str, minutes: int | None = None) -> str:
    """``2020-03-27 11:30-11:45 WIB (UTC+07:00)`` (an interval when ``minutes`` is given)."""
    zone = ZoneInfo(tz_name)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    local = moment.astimezone(zone)
    offset = local.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    name = local.tzname() or tz_name
    text = f"{local:%Y-%m-%d %H:%M}"
    if minutes:
        text += f"–{(local + timedelta(minutes=minutes)):%H:%M}"
    return f"{text} {name} ({offset})" if name != offset else f"{text} ({offset})"


def published_density_map(con: Any, settings: Any, window: datetime, path: str | Path, *,
                          alerts_from: datetime | None = None, alerts_to: datetime | None = None,
                          title: str | None = None, level: str | None = None, compact: bool = True,
                          figsize: tuple[float, float] = (7.2, 6.0), dpi: int = 90) -> PublishedMap:
    """Choropleth of district_density_published for ``window`` at ``level`` (default finest), with the
    places of the crowd_alerts_published alerts open at some time in [alerts_from, alerts_to)
    (default: that window) outlined: a district alert's polygon at its level, a site alert's ring at
    its place. Mainland framed, outlying islands in an inset. Only published values are read."""
    from crowd_platform.common.warehouse import read_sql

    began = time.perf_counter()
    k = settings.k_anonymity
    minutes = settings.window_minutes
    tz_name = settings.config.density.local_timezone
    level = level or finest_level(con)
    if level is None:
        return PublishedMap(None, window, None)
    districts = map_districts(con, level)
    published = con.execute(read_sql("geography/maps_district_density_published"),
                            {"window": window, "level": level}).df()
    # Only a row that the publication shows (not suppressed, both numbers present) gives a value.
    visible = published[~published["suppressed"].astype(bool)
                        & published["people_estimate"].notna() & published["density_per_km2"].notna()]
    values: dict[str, float | None] = {str(code): None for code in published["district_code"]}
    counts: dict[str, float | None] = {str(code): None for code in published["district_code"]}
    for row in visible.itertuples(index=False):
        values[str(row.district_code)] = float(row.density_per_km2)
        counts[str(row.district_code)] = float(row.people_estimate)

    lo = alerts_from or window
    hi = alerts_to or (window + timedelta(minutes=minutes))
    alerts = con.execute(read_sql("geography/maps_crowd_alerts_published"), {"lo": lo, "hi": hi}).df()
    shapes: list[Any] = []
    district_alerts = 0
    for alert_level, group in alerts[alerts["level"] != "site"].groupby("level"):
        polygons = map_districts(con, str(alert_level))
        chosen = polygons[polygons["district_code"].astype(str).isin(set(group["place_id"].astype(str)))]
        shapes.extend(chosen.geometry)
        district_alerts += len(chosen)
    site_ids = sorted(set(alerts.loc[alerts["level"] == "site", "place_id"].astype(str)))
    points: list[tuple[float, float]] = []
    if site_ids:
        located = con.execute(read_sql("geography/maps_alert_site_places"), {"place_ids": site_ids}).fetchall()
        points = [(float(lon), float(lat)) for _, lon, lat in located]

    if title is None:
        title = f"Published crowd density by {level}, {local_label(window, tz_name, minutes)}"
    outlying = outlying_mask(districts)
    note = (f"Values from district_density_published (k = {k}); hatched grey = suppressed. "
            + ("Outlying islands in the inset (top left). " if outlying.any() else ""))
    target = density_map(districts, values, k, (), title=title, path=path, counts_by_code=counts,
                         alert_shapes=gpd.GeoSeries(shapes, crs="EPSG:4326") if shapes else None,
                         alert_points=points, inset_outlying=True, note=note, figsize=figsize,
                         dpi=dpi, compact=compact)
    shown = sum(1 for value in values.values() if value is not None)
    return PublishedMap(Path(target), window, level, districts_shown=shown,
                        districts_suppressed=len(values) - shown, district_alerts=district_alerts,
                        site_alerts=len(points), seconds=time.perf_counter() - began,
                        alert_ids=[str(alert_id) for alert_id in alerts["alert_id"]])


def range_map_markdown(con: Any, settings: Any, lo: datetime, hi: datetime, *, alt: str,
                       alerts_of_range: bool = False, title: str | None = None) -> tuple[str, dict[str, Any]]:
    """(markdown with the PNG inline, summary) for asset metadata: published density of the last
    published window in [lo, hi) with the alerts open in that window (``alerts_of_range``: open at
    some time in [lo, hi)). One map per call, whatever the length of the range; the PNG is a
    temporary file, gone once inlined."""
    import tempfile

    began = time.perf_counter()
    window = last_published_window(con, lo, hi)
    if window is None:
        return f"_{alt}: no published density in this range_", {"window": None, "seconds": 0.0}
    if title is None and alerts_of_range:
        tz_name = settings.config.density.local_timezone
        title = (f"Crowd alerts open {local_label(lo, tz_name)} – {local_label(hi, tz_name)}\n"
                 f"over published density, {local_label(window, tz_name, settings.window_minutes)}")
    with tempfile.TemporaryDirectory(prefix="crowd-map-") as folder:
        drawn = published_density_map(con, settings, window, Path(folder) / "map.png", title=title,
                                      alerts_from=lo if alerts_of_range else None,
                                      alerts_to=hi if alerts_of_range else None)
        markdown = drawn.markdown(alt)
        if markdown.startswith("_"):
            markdown = f"_{alt}: PNG of {drawn.bytes // 1024} KB too large for metadata_"
        summary = drawn.summary()
    if alerts_of_range:
        summary["alert_ids"] = drawn.alert_ids[:50]
    summary["seconds"] = round(time.perf_counter() - began, 3)
    return markdown, summary


__all__ = ["range_map_markdown", "density_map", "map_values", "coverage_map", "png_markdown", "png_data_uri", "add_scale_bar",
           "outlying_mask", "published_density_map", "last_published_window", "local_label", "PublishedMap",
           "map_districts", "finest_level"]
