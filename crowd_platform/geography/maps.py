"""Static maps (PNG, matplotlib Agg): coverage per operator and k-anonymised density choropleths.

Maps leave the platform (UI metadata, reports), so :func:`density_map` never draws a count of
k or less: such districts are hatched grey and labelled "suppressed", and the colour scale is
built from shown values only (its ticks can never reveal a suppressed value).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: assets and CLI run without a display

import geopandas as gpd  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

SUPPRESSED_COLOR = "#d9d9d9"
NO_DATA_COLOR = "#ffffff"
ALERT_COLOR = "#d7191c"
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


def _finish(fig: plt.Figure, path: Path | None, dpi: int) -> Path | None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
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
) -> Path:
    """Choropleth of ``values_by_code`` over ``districts_gdf`` (columns district_code, geometry; EPSG:4326).

    - a listed code whose count (``counts_by_code``, people) is <= ``k`` or missing, or whose value is
      None or NaN, is drawn as "suppressed (≤ k)", hatched grey;
      codes absent from ``values_by_code`` are "no data" (white);
    - districts in ``alert_codes`` are outlined in red;
    - legend (colour bar + suppressed / no data / alert patches), scale bar, title.
    Callers pass k-anonymised values (e.g. district_density_published); the k test here is a
    second line of defence. Returns the PNG path.
    """
    if path is None:
        raise ValueError("density_map needs a path to write the PNG to")
    frame = districts_gdf[["district_code", "geometry"]].copy()
    frame["district_code"] = frame["district_code"].astype(str)
    frame["value"], frame["status"] = map_values(frame["district_code"], values_by_code, k, counts_by_code)
    listed, shown = frame["status"] != "no data", frame["status"] == "shown"
    suppressed = frame["status"] == "suppressed"

    fig, ax = plt.subplots(figsize=(8, 7))
    frame[~listed].plot(ax=ax, color=NO_DATA_COLOR, edgecolor="#bbbbbb", linewidth=0.3)
    frame[suppressed].plot(ax=ax, color=SUPPRESSED_COLOR, edgecolor="#999999", linewidth=0.3, hatch="///")
    if shown.any():
        values = frame.loc[shown, "value"]
        frame[shown].plot(ax=ax, column="value", cmap="YlOrRd", edgecolor="#666666", linewidth=0.3,
                          vmin=float(values.min()), vmax=float(values.max()), legend=True,
                          legend_kwds={"label": value_label, "shrink": 0.6})
    alerts = frame["district_code"].isin({str(code) for code in alert_codes})
    if alerts.any():
        frame[alerts].boundary.plot(ax=ax, color=ALERT_COLOR, linewidth=2.0)
    handles = [
        Patch(facecolor=SUPPRESSED_COLOR, edgecolor="#999999", hatch="///", label=f"suppressed (≤ {k})"),
        Patch(facecolor=NO_DATA_COLOR, edgecolor="#bbbbbb", label="no data"),
        Patch(facecolor="none", edgecolor=ALERT_COLOR, linewidth=2, label="crowd alert"),
    ]
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9)
    ax.set_title(title)
    ax.set_axis_off()
    ax.set_aspect("equal")
    add_scale_bar(ax)
    return _finish(fig, Path(path), dpi)  # type: ignore[return-value]


def coverage_map(coverage: gpd.GeoDataFrame, districts_gdf: gpd.GeoDataFrame, path: str | Path,
                 title: str = "Coverage (Voronoi of sites)", dpi: int = 80) -> Path:
    """One panel per scope (each operator, then 'all'): Voronoi polygons over district outlines."""
    scopes = sorted(scope for scope in coverage["scope"].unique() if scope != "all")
    if "all" in set(coverage["scope"]):
        scopes.append("all")
    columns = min(3, max(1, len(scopes)))
    rows = max(1, math.ceil(len(scopes) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.6 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for index, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if index >= len(scopes):
            continue
        scope = scopes[index]
        districts_gdf.plot(ax=ax, color="#f2f2f2", edgecolor="#bbbbbb", linewidth=0.2)
        part = coverage[coverage["scope"] == scope]
        part.boundary.plot(ax=ax, color=colors(index % 10), linewidth=0.4)
        ax.scatter(part["lon"], part["lat"], s=0.6, color="black")
        ax.set_title(f"{scope}: {len(part)} sites", fontsize=9)
        ax.set_aspect("equal")
        add_scale_bar(ax)
    fig.suptitle(title, fontsize=11)
    return _finish(fig, Path(path), dpi)  # type: ignore[return-value]


def png_markdown(path: Path, alt: str = "map", max_bytes: int = MAX_METADATA_BYTES) -> str:
    """Markdown with the PNG inline as a data URI (Dagster UI metadata); a note instead if too big."""
    payload = Path(path).read_bytes()
    if len(payload) > max_bytes:
        return f"_{alt}: {len(payload) // 1024} KB, too large to inline; see `{path}`_"
    encoded = base64.b64encode(payload).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"


__all__ = ["density_map", "map_values", "coverage_map", "png_markdown", "add_scale_bar"]
