"""A fake of the published API's four map routes, serving a synthetic published dataset: the
browser test's deliberately bad data (suppressed features carrying numbers, markup in names) and
bench/screenshot_ops_map.py --fake. The real server is tested in test_ops_map_browser.py too."""

from __future__ import annotations

import json
import mimetypes
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STATIC = PROJECT_ROOT / "crowd_platform" / "api" / "static"
TOKEN = "test-token-ops-map"
K = 15
LEVELS = ["kelurahan", "kecamatan", "kabkota"]
XSS_NAME = '<img src=x onerror="window.__xss=1">Kel. <b>Markup</b>'


# ---------------------------------------------------------------------------------------------
# The fake API: a dataset of published features, served like the real routes.
# ---------------------------------------------------------------------------------------------

def _square(lon: float, lat: float, size: float) -> dict[str, Any]:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def synthetic_dataset() -> dict[str, Any]:
    """Three windows over a 4x4 grid of kelurahan near Jakarta plus two outlying islands, rolled up
    to 4 kecamatan and 1 kabkota; a district alert and a site alert live in the last window."""
    start = datetime(2020, 3, 27, 4, 0, tzinfo=timezone.utc)
    windows = [(start + timedelta(minutes=15 * index)).isoformat() for index in range(3)]
    size = 0.02
    places: dict[str, list[dict[str, Any]]] = {level: [] for level in LEVELS}
    for row in range(4):
        for column in range(4):
            code = f"31710{row}{column}"
            name = XSS_NAME if (row, column) == (3, 0) else f"Kelurahan {row}-{column}"
            places["kelurahan"].append({"code": code, "name": name, "parent": f"3171{row // 2}{column // 2}",
                                        "geometry": _square(106.80 + column * size, -6.26 + row * size, size)})
    for index, (lon, lat) in enumerate(((106.55, -5.60), (106.57, -5.65))):
        places["kelurahan"].append({"code": f"310100{index}", "name": f"Pulau {index}", "parent": "31010",
                                    "geometry": _square(lon, lat, 0.01)})
    for row in range(2):
        for column in range(2):
            places["kecamatan"].append({"code": f"3171{row}{column}", "name": f"Kecamatan {row}-{column}",
                                        "geometry": _square(106.80 + column * 2 * size, -6.26 + row * 2 * size, 2 * size)})
    places["kabkota"].append({"code": "3171", "name": "Kota Contoh", "geometry": _square(106.80, -6.26, 4 * size)})

    density: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for window_index, window in enumerate(windows):
        for level, items in places.items():
            features = []
            for number, place in enumerate(items):
                people: int | None = 100 + ((number * 37 + window_index * 211) % 400) * (1 + LEVELS.index(level))
                suppressed = False
                if level == "kelurahan" and place["code"] in ("3171003", "3171013"):
                    people, suppressed = None, True  # hidden by the publication: null values
                properties = {
                    "window_start": window, "level": level, "district_code": place["code"],
                    "district_name": place["name"], "people_estimate": people,
                    "density_per_km2": None if people is None else round(people / 4.9, 2), "suppressed": suppressed,
                }
                if level == "kelurahan" and place["code"] == "3171023":
                    # Inconsistent on purpose: flagged suppressed but with a count at or below k.
                    properties.update(people_estimate=7, density_per_km2=1.4, suppressed=True)
                features.append({"type": "Feature", "geometry": place["geometry"], "properties": properties})
            density[(level, window)] = features

    district_alert = {
        "alert_id": "alert-district-1", "level": "kelurahan", "place_id": "3171011", "place_name": "Kelurahan 1-1",
        "state": "escalated", "severity": 2, "opened_window": windows[1], "last_window": windows[2],
        "people_estimate": 480, "evidence_suppressed": False,
    }
    site_alert = {
        "alert_id": "alert-site-2", "level": "site", "place_id": "site-42", "place_name": "Masjid <Istiqlal>",
        "state": "open", "severity": 1, "opened_window": windows[2], "last_window": windows[2],
        "people_estimate": None, "evidence_suppressed": True,
    }
    alerts = {
        windows[0]: [],
        windows[1]: [(district_alert, _square(106.82, -6.24, size))],
        windows[2]: [(district_alert, _square(106.82, -6.24, size)),
                     (site_alert, {"type": "Point", "coordinates": [106.851, -6.205]})],
    }
    details = {
        "alert-district-1": {**district_alert, "lineage_id": "lineage-7f3a9c",
                             "lineage_command": "crowd-platform audit trace alert-district-1",
                             "transitions": [
                                 {"window_start": windows[1], "transition": "opened", "people_estimate": 455,
                                  "evidence_suppressed": False},
                                 {"window_start": windows[2], "transition": "escalated", "people_estimate": None,
                                  "evidence_suppressed": True},
                             ]},
        "alert-site-2": {**site_alert, "lineage_id": "lineage-1b2c3d",
                         "lineage_command": "crowd-platform audit trace alert-site-2",
                         "transitions": [{"window_start": windows[2], "transition": "opened",
                                          "people_estimate": None, "evidence_suppressed": True}]},
    }
    return {"windows": windows, "levels": LEVELS, "timezone": "Asia/Jakarta", "density": density,
            "alerts": alerts, "details": details}


class FakeOpsApi:
    """Serves ``static`` at /map/ and the four routes from ``dataset`` on 127.0.0.1 (bearer ``token``)."""

    def __init__(self, dataset: dict[str, Any], token: str = TOKEN, static: Path = STATIC):
        self.dataset, self.token, self.static = dataset, token, static.resolve()
        self.requests: list[tuple[str, str | None]] = []

    @contextmanager
    def serve(self) -> Iterator[str]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, payload: Any, content_type: str = "application/json") -> None:
                self._send(status, json.dumps(payload).encode(), content_type)

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                parts = urlsplit(self.path)
                api.requests.append((parts.path, self.headers.get("Authorization")))
                if parts.path == "/map":
                    self.send_response(301)
                    self.send_header("Location", "/map/")
                    self.end_headers()
                    return
                if parts.path.startswith("/map/"):
                    relative = unquote(parts.path[len("/map/"):]) or "index.html"
                    target = (api.static / relative).resolve()
                    if api.static not in target.parents or not target.is_file():
                        self._send(404, b"not found", "text/plain")
                        return
                    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                    self._send(200, target.read_bytes(), kind)
                    return
                if not parts.path.startswith("/api/v1/"):
                    self._send(404, b"not found", "text/plain")
                    return
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    self._json(401, {"error": "unauthorized"})
                    return
                route, query = parts.path[len("/api/v1/"):], parse_qs(parts.query)
                data = api.dataset
                if route == "windows":
                    self._json(200, {"windows": data["windows"], "levels": data["levels"], "timezone": data["timezone"]})
                elif route == "density.geojson":
                    key = (query.get("level", [""])[0], query.get("window", [""])[0])
                    if key not in data["density"]:
                        self._json(404, {"error": "no such level/window"})
                        return
                    self._json(200, {"type": "FeatureCollection", "features": data["density"][key]},
                               "application/geo+json")
                elif route == "alerts.geojson":
                    window = query.get("window", [""])[0]
                    features = [{"type": "Feature", "geometry": geometry, "properties": properties}
                                for properties, geometry in data["alerts"].get(window, [])]
                    self._json(200, {"type": "FeatureCollection", "features": features}, "application/geo+json")
                elif route.startswith("alerts/") and unquote(route[len("alerts/"):]) in data["details"]:
                    self._json(200, data["details"][unquote(route[len("alerts/"):])])
                else:
                    self._json(404, {"error": "not found"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


