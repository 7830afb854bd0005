"""CAMARA Population Density Data (v0.3) shaped retrieval over the published density.

Mapping (docs/api.md): CAMARA divides the area into geohash cells; this platform publishes
districts, so the cells are the districts of the finest published level whose polygon
intersects the requested area (each cell also names its ``geohash``: the geohash, at the
requested precision, of a point inside the district, plus ``districtCode``/``districtName``).
Intervals are one hour long and cover [startTime, endTime). Per cell and interval:
``NO_DATA`` when no window of the hour is published for the district; ``LOW_DENSITY`` (no
number) when any published window of the hour is suppressed; otherwise ``DENSITY_ESTIMATION``
with ``pplDensity`` = the mean of the hour's published densities (people per km2 of land) and
``minPplDensity``/``maxPplDensity`` their minimum and maximum. Every number is therefore
derived from values the density publication already shows.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from crowd_platform.common.timeutil import TimeParseError, parse_utc

MAX_VERTICES = 15
MAX_RADIUS_M = 50_000.0
MAX_SPAN = timedelta(days=7)
INTERVAL = timedelta(hours=1)
_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"


class CamaraError(ValueError):
    """400 with a CAMARA error code."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def geohash(lat: float, lon: float, precision: int) -> str:
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    out, bits, bit, even = [], 0, 0, True
    while len(out) < precision:
        interval, value = (lon_range, lon) if even else (lat_range, lat)
        middle = (interval[0] + interval[1]) / 2
        if value >= middle:
            bits = (bits << 1) | 1
            interval[0] = middle
        else:
            bits <<= 1
            interval[1] = middle
        even = not even
        bit += 1
        if bit == 5:
            out.append(_BASE32[bits])
            bits, bit = 0, 0
    return "".join(out)


def _number(value: Any, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise CamaraError("INVALID_ARGUMENT", f"{what} must be a number in [{low:g}, {high:g}]")
    return float(value)


def _point(point: Any, what: str) -> tuple[float, float]:
    if not isinstance(point, dict):
        raise CamaraError("INVALID_ARGUMENT", f"{what} must be an object with latitude and longitude")
    return (_number(point.get("longitude"), -180, 180, f"{what}.longitude"),
            _number(point.get("latitude"), -90, 90, f"{what}.latitude"))


def parse_area(area: Any):
    """A shapely geometry (EPSG:4326) for a CAMARA POLYGON or CIRCLE area."""
    from shapely.geometry import Point, Polygon

    if not isinstance(area, dict):
        raise CamaraError("INVALID_ARGUMENT", "area must be an object with areaType")
    kind = area.get("areaType")
    if kind == "POLYGON":
        boundary = area.get("boundary")
        if not isinstance(boundary, list) or not 3 <= len(boundary) <= MAX_VERTICES:
            raise CamaraError("POPULATION_DENSITY_DATA.INVALID_AREA",
                              f"area.boundary must list 3 to {MAX_VERTICES} points")
        polygon = Polygon([_point(point, "area.boundary[]") for point in boundary])
        if not polygon.is_valid or polygon.area == 0:
            raise CamaraError("POPULATION_DENSITY_DATA.INVALID_AREA", "area.boundary is not a simple polygon")
        return polygon
    if kind == "CIRCLE":
        lon, lat = _point(area.get("center"), "area.center")
        radius = _number(area.get("radius"), 1, MAX_RADIUS_M, "area.radius (metres)")
        # A local equirectangular approximation is enough at these radii (< 50 km).
        dlat = radius / 111_320.0
        dlon = radius / (111_320.0 * max(math.cos(math.radians(lat)), 1e-6))
        circle = Point(0, 0).buffer(1.0, 32)
        from shapely import affinity

        return affinity.translate(affinity.scale(circle, dlon, dlat, origin=(0, 0)), lon, lat)
    raise CamaraError("INVALID_ARGUMENT", "area.areaType must be POLYGON or CIRCLE")


def parse_request(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise CamaraError("INVALID_ARGUMENT", "the request body must be a JSON object")
    unknown = sorted(set(body) - {"area", "startTime", "endTime", "precision", "sink", "sinkCredential"})
    if unknown:
        raise CamaraError("INVALID_ARGUMENT", "unknown property in the request (allowed: area, startTime, endTime, precision)")
    if "sink" in body or "sinkCredential" in body:
        raise CamaraError("INVALID_ARGUMENT", "asynchronous delivery (sink) is not supported: this server only reads")
    times = {}
    for key in ("startTime", "endTime"):
        value = body.get(key)
        if not isinstance(value, str):
            raise CamaraError("INVALID_ARGUMENT", f"{key} is required (RFC 3339 with a time zone)")
        try:
            times[key] = parse_utc(value, what=key, require_offset=True)
        except TimeParseError as error:
            raise CamaraError("INVALID_ARGUMENT", str(error)) from None
    if times["endTime"] < times["startTime"]:
        raise CamaraError("POPULATION_DENSITY_DATA.INVALID_END_TIME", "Indicated endTime is earlier than the startTime")
    if times["endTime"] - times["startTime"] > MAX_SPAN:
        raise CamaraError("POPULATION_DENSITY_DATA.UNSUPPORTED_REQUEST", "endTime - startTime exceeds 7 days")
    precision = body.get("precision", 7)
    if isinstance(precision, bool) or not isinstance(precision, int) or not 1 <= precision <= 12:
        raise CamaraError("POPULATION_DENSITY_DATA.UNSUPPORTED_PRECISION", "precision must be an integer from 1 to 12")
    return {"area": parse_area(body.get("area")), "start": times["startTime"], "end": times["endTime"],
            "precision": precision}


def intervals(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """One-hour intervals covering [start, end] (CAMARA: both ends fully covered)."""
    first = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = []
    moment = first
    while moment < end or not out:
        out.append((moment, moment + INTERVAL))
        moment += INTERVAL
    return out


def build_response(cells: list[dict[str, Any]], spans: list[tuple[datetime, datetime]],
                   hourly: dict[tuple[datetime, str], list[tuple[float | None, bool]]]) -> dict[str, Any]:
    """cells: [{district_code, district_name, geohash}]; hourly: (UTC hour, district) -> the
    published (density, suppressed) of each window of that hour."""
    if not cells:
        return {"status": "AREA_NOT_SUPPORTED", "timedPopulationDensityData": []}
    any_missing = False
    timed = []
    for begin, finish in spans:
        out_cells = []
        for cell in cells:
            found = hourly.get((begin, cell["district_code"]))
            base = {"geohash": cell["geohash"], "districtCode": cell["district_code"],
                    "districtName": cell["district_name"]}
            if not found:
                any_missing = True
                out_cells.append({**base, "dataType": "NO_DATA"})
            elif any(suppressed or density is None for density, suppressed in found):
                out_cells.append({**base, "dataType": "LOW_DENSITY"})
            else:
                values = [float(density) for density, _ in found]
                out_cells.append({**base, "dataType": "DENSITY_ESTIMATION",
                                  "pplDensity": int(round(sum(values) / len(values))),
                                  "minPplDensity": int(math.floor(min(values))),
                                  "maxPplDensity": int(math.ceil(max(values)))})
        timed.append({"startTime": begin.strftime("%Y-%m-%dT%H:%M:%SZ"), "endTime": finish.strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "cellPopulationDensityData": out_cells})
    return {"status": "PART_OF_AREA_NOT_SUPPORTED" if any_missing else "SUPPORTED_AREA",
            "timedPopulationDensityData": timed}
