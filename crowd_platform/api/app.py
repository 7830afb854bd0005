"""The read-only published API (docs/api.md): a Starlette application over the server's in-memory
copy of the published datasets (snapshot.py), with bearer tokens scoped per dataset (tokens.py),
one audit record per request (access_log.py) and responses cached per snapshot version.

Errors are one line of JSON in the CAMARA ErrorInfo shape ``{"status", "code", "message"}``; a
message names the parameter and what it must be, never the value received, and never carries a
stack trace.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from crowd_platform.api import camara
from crowd_platform.api.access_log import AccessLog
from crowd_platform.api.datasets import ALERTS, DEDICATED, DENSITY, TRANSITIONS
from crowd_platform.api.snapshot import Snapshot, SnapshotManager, api_sql, dumps
from crowd_platform.api.tokens import Grant, TokenStore, tokens_file
from crowd_platform.common.settings import Settings
from crowd_platform.common.timeutil import TimeParseError, parse_utc

PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).resolve().parent / "static"
JSON = "application/json"
GEOJSON = "application/geo+json"
PARQUET = "application/vnd.apache.parquet"
MAX_JSON_SPAN = timedelta(days=7)
MAX_EXPORT_SPAN = timedelta(days=31)
MAX_BODY = 64 * 1024
ALERT_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,160}$")
ALERT_STATES = ("open", "escalated", "closed", "retracted")  # crowd_alerts.state (alerts/engine.py)
# Numeric columns of an indicator table that are keys, not counts (kept on a suppressed row).
NOT_COUNTS = frozenset({"hour", "level_rank"})
LINEAGE_COMMAND = "crowd-platform audit trace {alert_id}"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_body(status: int, code: str, message: str) -> bytes:
    return dumps({"status": status, "code": code, "message": message.splitlines()[0][:300] if message else code})


def bad(message: str, code: str = "INVALID_ARGUMENT") -> ApiError:
    return ApiError(400, code, message)


@dataclass
class Result:
    body: bytes
    media_type: str = JSON
    headers: dict[str, str] | None = None


class ResponseCache:
    """LRU of response bodies keyed by (route, parameters, snapshot version)."""

    def __init__(self, entries: int = 512, max_body: int = 32 * 1024 * 1024) -> None:
        self.entries, self.max_body = entries, max_body
        self._items: OrderedDict[tuple, Result] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> Result | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return found

    def put(self, key: tuple, result: Result) -> None:
        if len(result.body) > self.max_body:
            return
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)


# ------------------------------------------------------------------ parameter parsing
def _params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise bad(f"unknown parameter (allowed: {', '.join(allowed) or 'none'})")
        if key in params:
            raise bad(f"parameter {key} given twice")
        if len(value) > 200:
            raise bad(f"parameter {key} is too long")
        params[key] = value
    return params


def _instant(value: str, name: str) -> datetime:
    try:
        return parse_utc(value, what=name)
    except TimeParseError:
        raise bad(f"{name} must be an ISO-8601 UTC time, e.g. 2020-04-03T02:00:00Z") from None


def _day(value: str, name: str = "day") -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise bad(f"{name} must be a date YYYY-MM-DD") from None


def _span(params: dict[str, str], limit: timedelta, window_allowed: bool = True) -> tuple[datetime, datetime]:
    """[start, end) from ``window`` (one window start) or ``start`` and ``end``."""
    if window_allowed and "window" in params:
        if "start" in params or "end" in params:
            raise bad("give window, or start and end, not both")
        start = _instant(params["window"], "window")
        return start, start + timedelta(seconds=1)
    if "start" not in params or "end" not in params:
        raise bad("window, or start and end, are required" if window_allowed else "start and end are required")
    start, end = _instant(params["start"], "start"), _instant(params["end"], "end")
    if end <= start:
        raise bad("end must be after start")
    if end - start > limit:
        raise bad(f"start..end must span at most {limit.days} days")
    return start, end


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    def __init__(self, settings: Settings, *, refresh_interval_s: float = 2.0, token_check_s: float = 0.5,
                 static_dir: Path | None = None) -> None:
        self.settings = settings
        self.snapshots = SnapshotManager(settings, check_interval_s=refresh_interval_s)
        self.tokens = TokenStore(tokens_file(settings), check_interval_s=token_check_s)
        self.access_log: AccessLog | None = None
        self.cache = ResponseCache()
        self.static_dir = static_dir or STATIC_DIR

    # ---------------------------------------------------------------- lifecycle
    def startup(self) -> None:
        self.access_log = AccessLog(self.settings.home)
        self.snapshots.start()

    def shutdown(self) -> None:
        self.snapshots.stop()
        if self.access_log is not None:
            self.access_log.close()

    # ---------------------------------------------------------------- plumbing
    def snapshot(self) -> Snapshot:
        current = self.snapshots.current
        if current is None:
            raise ApiError(503, "UNAVAILABLE", "no published copy yet (the warehouse could not be read)")
        return current

    def _grant(self, request: Request) -> Grant:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "UNAUTHENTICATED", "a bearer token is required (Authorization: Bearer <token>)")
        grant = self.tokens.lookup(token.strip())
        if grant is None:
            raise ApiError(401, "UNAUTHENTICATED", "the bearer token is not valid (unknown or revoked)")
        return grant

    def _headers(self, snapshot: Snapshot | None) -> dict[str, str]:
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
        if snapshot is not None:
            age = max(0.0, time.time() - snapshot.taken_at)
            headers["X-Snapshot-Version"] = str(snapshot.version)
            headers["X-Snapshot-Age"] = f"{age:.1f}"
            headers["X-Snapshot-Taken-At"] = _iso(datetime.fromtimestamp(snapshot.taken_at, timezone.utc))
            if self.snapshots.last_error is not None:
                headers["X-Snapshot-Stale"] = "warehouse locked or unreadable; serving the last copy"
        return headers

    async def serve(self, request: Request, route: str, allowed: tuple[str, ...],
                    datasets: Callable[[dict[str, str], Snapshot], tuple[str, ...]],
                    compute: Callable[[Snapshot, dict[str, str], Any], Result], body: bool = False) -> Response:
        state = request.scope.setdefault("state", {})
        state["route"] = route
        snapshot = None
        try:
            params = _params(request, allowed)
            path_params = {key: str(value) for key, value in request.path_params.items()}
            state["params"] = {**path_params, **params}
            grant = self._grant(request)
            state["who"] = grant.name
            state["token_id"] = grant.token_id
            snapshot = self.snapshot()
            merged = {**path_params, **params}
            needed = datasets(merged, snapshot)
            state["dataset"] = ",".join(needed)
            for dataset in needed:
                if not grant.allows(dataset):
                    raise ApiError(403, "PERMISSION_DENIED", f"the token's scope does not include {dataset}")
            for dataset in needed:
                if dataset not in snapshot.tables:
                    raise ApiError(404, "NOT_FOUND", f"{dataset} is not published yet")
            payload = None
            key_extra = ""
            if body:
                payload = await request.body()  # parsed by the computation, on a cache miss only
                if len(payload) > MAX_BODY:
                    raise bad("request body too large")
                key_extra = hashlib.sha256(payload).hexdigest()
                # 16 hex digits identify a body in the audit trail; a full 64-hex digest has the
                # shape of a pseudonym, which the sunset scan of the kept audit files must flag.
                state["params"] = {**state["params"], "body_sha256_16": key_extra[:16]}
            key = (route, tuple(sorted(merged.items())), key_extra, snapshot.version)
            result = self.cache.get(key)
            if result is None:
                result = await run_in_threadpool(compute, snapshot, merged, payload)
                self.cache.put(key, result)
            headers = {**self._headers(snapshot), **(result.headers or {})}
            return Response(result.body, media_type=result.media_type, headers=headers)
        except ApiError as error:
            headers = self._headers(snapshot)
            if error.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="crowd_platform"'
            return Response(error_body(error.status, error.code, error.message), status_code=error.status,
                            media_type=JSON, headers=headers)
        except camara.CamaraError as error:
            return Response(error_body(error.status, error.code, str(error)), status_code=error.status,
                            media_type=JSON, headers=self._headers(snapshot))

    # ---------------------------------------------------------------- levels
    def _levels(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        return snapshot.memo("levels", lambda: snapshot.rows(api_sql("levels")))

    def _level(self, snapshot: Snapshot, params: dict[str, str]) -> str:
        levels = [row["level"] for row in self._levels(snapshot)]
        level = params.get("level")
        if level is None:
            raise bad(f"level is required (one of: {', '.join(levels)})")
        if level not in levels:
            raise bad(f"level must be one of: {', '.join(levels)}")
        return level

    # ---------------------------------------------------------------- computations (threadpool)
    def windows(self, snapshot: Snapshot, params: dict[str, str], _: Any) -> Result:
        windows = [_iso(row["window_start"]) for row in snapshot.rows(api_sql("windows"))]
        return Result(dumps({"windows": windows, "levels": self._levels(snapshot),
                             "window_minutes": self.settings.window_minutes,
                             "timezone": self.settings.config.density.local_timezone,
                             "k_anonymity": self.settings.k_anonymity}))

    def _density_level(self, snapshot: Snapshot, level: str) -> tuple[list[datetime], dict[datetime, list[dict[str, Any]]]]:
        """Every published window of a level, rows grouped per window (built once per copy)."""
        def build():
            by_window: dict[datetime, list[dict[str, Any]]] = {}
            for row in snapshot.rows(api_sql("density_level"), {"level": level}):
                start = row["window_start"].astimezone(timezone.utc)
                row["window_start"] = _iso(start)
                if row["suppressed"]:
                    row["people_estimate"] = row["density_per_km2"] = None
                by_window.setdefault(start, []).append(row)
            return sorted(by_window), by_window
        return snapshot.memo(("density", level), build)

    def density_rows(self, snapshot: Snapshot, params: dict[str, str], limit: timedelta) -> tuple[str, datetime, datetime, list[dict[str, Any]]]:
        start, end = _span(params, limit)
        level = self._level(snapshot, params)
        windows, by_window = self._density_level(snapshot, level)
        rows: list[dict[str, Any]] = []
        for window in windows[bisect.bisect_left(windows, start):bisect.bisect_left(windows, end)]:
            rows.extend(by_window[window])
        return level, start, end, rows

    def density(self, snapshot: Snapshot, params: dict[str, str], _: Any) -> Result:
        level, start, end, rows = self.density_rows(snapshot, params, MAX_JSON_SPAN)
        return Result(dumps({"level": level, "start": _iso(start), "end": _iso(end), "count": len(rows), "rows": rows}))

    def density_geojson(self, snapshot: Snapshot, params: dict[str, str], _: Any) -> Result:
        if "window" not in params:
            raise bad("window is required")
        level, _start, _end, rows = self.density_rows(snapshot, params, MAX_JSON_SPAN)
        geometries = snapshot.geojson_geometries(level)
        features = []
        for row in rows:
            geometry = geometries.get(row["district_code"], "null")
            features.append('{"type":"Feature","id":' + json.dumps(row["district_code"]) + ',"geometry":' + geometry
                            + ',"properties":' + dumps(row).decode("utf-8") + "}")
        body = '{"type":"FeatureCollection","features":[' + ",".join(features) + "]}"
        return Result(body.encode("utf-8"), GEOJSON)

    def _alerts(self, snapshot: Snapshot, params: dict[str, str]) -> list[dict[str, Any]]:
        window = _instant(params["window"], "window") if "window" in params else None
        state = params.get("state")
        if state is not None and state not in ALERT_STATES:
            raise bad(f"state must be one of: {', '.join(ALERT_STATES)}")
        rows = snapshot.rows(api_sql("alerts"), {"window": window, "state": state})
        for row in rows:
            if row.get("evidence_suppressed"):
                row["people_estimate"] = None
        return rows

    def alerts(self, snapshot: Snapshot, params: dict[str, str], _: Any) -> Result:
        rows = self._alerts(snapshot, params)
        return Result(dumps({"count": len(rows), "alerts": rows}))

    def alerts_geojson(self, snapshot: Snapshot, params: dict[str, str], _: Any) -> Result:
        rows = self._alerts(snapshot, params)
        points = {row["place_id"]: (row["lon"], row["lat"]) for row in snapshot.rows(api_sql("place_points"))}
        features = []
        keep = ("alert_id", "level", "place_id", "place_name", "state", "severity", "opened_window", "last_window",
                "people_estimate", "evidence_suppressed")
        for row in rows:
            if row["level"] == "site":
                point = points.get(row["place_id"])
                geometry = ('{"type":"Point","coordinates":[' + f"{point[0]:.6f},{point[1]:.6f}" + "]}") if point else "null"
            else:
                geometry = snapshot.geojson_geometries(row["level"]).get(row["place_id"], "null")
            properties = {name: row.get(name) for name in keep}
            features.append('{"type":"Feature","id":' + json.dumps(row["alert_id"]) + ',"geometry":' + geometry
                            + ',"properties":' + dumps(properties).decode("utf-8") + "}")
        body = '{"type":"FeatureCollection","features":[' + ",".join(features) + "]}"
        return Result(body.encode("utf-8"), GEOJSON)

    def alert(self, snapshot: Snapshot, params: dict[str, str], _: Any) -> Result:
        alert_id = params["alert_id"]
        if not ALERT_ID.match(alert_id):
            raise bad("alert_id has characters an alert id never has")
        rows = snapshot.rows(api_sql("alert"), {"alert_id": alert_id})
        if not rows:
            raise ApiError(404, "NOT_FOUND", "no published alert with that id")
        alert = rows[0]
        if alert.get("evidence_suppressed"):
            alert["people_estimate"] = None
        transitions = snapshot.rows(api_sql("alert_transitions"), {"alert_id": alert_id}) \
            if TRANSITIONS in snapshot.tables else []
        # Flat: the alert's published columns, its transitions (evidence) and how to trace it.
        return Result(dumps({**alert, "transitions": transitions, "lineage_id": alert_id,
                             "lineage_command": LINEAGE_COMMAND.format(alert_id=alert_id)}))

    def indicator(self, snapshot: Snapshot, params: dict[str, str], _: Any) -> Result:
        dataset = params["dataset"]
        columns = {row["column_name"]: row["data_type"] for row in snapshot.rows(api_sql("table_columns"), {"table": dataset})}
        day_column = next((name for name in ("day", "date", "window_start") if name in columns), None)
        level_column = "level" if "level" in columns else None
        day = _day(params["day"]) if "day" in params else None
        if day is not None and day_column is None:
            raise bad("this dataset has no day to filter on")
        if "level" in params and level_column is None:
            raise bad("this dataset has no level to filter on")
        sql = api_sql("indicator_rows", table=dataset, day=day_column or "NULL", level=level_column or "NULL")
        rows = snapshot.rows(sql, {"day": day, "level": params.get("level")})
        if "suppressed" in columns:
            numeric = [name for name, kind in columns.items()
                       if kind.split("(")[0] in ("BIGINT", "INTEGER", "DOUBLE", "DECIMAL", "HUGEINT", "FLOAT", "SMALLINT", "REAL")
                       and name not in NOT_COUNTS]
            for row in rows:
                if row.get("suppressed"):
                    for name in numeric:
                        row[name] = None
        return Result(dumps({"dataset": dataset, "count": len(rows), "rows": rows}))

    def _camara_cells(self, snapshot: Snapshot) -> dict[str, Any] | None:
        """The finest published level's districts (an STRtree of their polygons, names, a point
        inside each) and its published (density, suppressed) per UTC hour and district."""
        def build():
            from shapely import STRtree

            finest = snapshot.rows(api_sql("finest_level"))
            if not finest:
                return {"level": None}
            level = finest[0]["level"]
            geometries = snapshot.geometries(level)
            codes = sorted(geometries)
            names = {row["district_code"]: row["name"] for row in snapshot.rows(api_sql("district_geometry"), {"level": level})}
            points = [geometries[code].representative_point() for code in codes]
            hourly: dict[tuple[datetime, str], list[tuple[float | None, bool]]] = {}
            windows, by_window = self._density_level(snapshot, level)
            for window in windows:
                hour = window.replace(minute=0, second=0, microsecond=0)
                for row in by_window[window]:
                    hourly.setdefault((hour, row["district_code"]), []).append((row["density_per_km2"], bool(row["suppressed"])))
            return {"level": level, "tree": STRtree([geometries[code] for code in codes]), "codes": codes,
                    "names": [names.get(code) for code in codes], "points": [(p.y, p.x) for p in points], "hourly": hourly}
        return snapshot.memo("camara", build)

    def camara(self, snapshot: Snapshot, params: dict[str, str], body: bytes) -> Result:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            raise bad("the request body is not valid JSON") from None
        request = camara.parse_request(payload)
        index = self._camara_cells(snapshot)
        if index["level"] is None:
            return Result(dumps({"status": "AREA_NOT_SUPPORTED", "timedPopulationDensityData": []}))
        hits = sorted(int(i) for i in index["tree"].query(request["area"], predicate="intersects"))
        cells = [{"district_code": index["codes"][i], "district_name": index["names"][i],
                  "geohash": camara.geohash(*index["points"][i], request["precision"])} for i in hits]
        spans = camara.intervals(request["start"], request["end"])
        return Result(dumps(camara.build_response(cells, spans, index["hourly"])))

    def export_parquet(self, snapshot: Snapshot, params: dict[str, str], _: Any) -> Result:
        import geopandas
        import pandas

        start, end = _span(params, MAX_EXPORT_SPAN, window_allowed=False)
        level = self._level(snapshot, params)
        rows = snapshot.rows(api_sql("density"), {"level": level, "start": start, "end": end})
        geometries = snapshot.geometries(level)
        frame = pandas.DataFrame(rows, columns=["window_start", "level", "district_code", "district_name",
                                                "people_estimate", "density_per_km2", "suppressed"])
        suppressed = frame["suppressed"].astype(bool)
        frame["people_estimate"] = frame["people_estimate"].astype("Int64").mask(suppressed)
        frame["density_per_km2"] = frame["density_per_km2"].astype("Float64").mask(suppressed)
        frame["window_start"] = pandas.to_datetime(frame["window_start"], utc=True)
        geo = geopandas.GeoDataFrame(frame, geometry=[geometries.get(code) for code in frame["district_code"]],
                                     crs="EPSG:4326")
        buffer = io.BytesIO()
        geo.to_parquet(buffer, index=False)
        name = f"density_{level}_{start:%Y%m%dT%H%MZ}_{end:%Y%m%dT%H%MZ}.parquet"
        return Result(buffer.getvalue(), PARQUET, {"Content-Disposition": f'attachment; filename="{name}"'})

    # ---------------------------------------------------------------- unauthenticated
    async def health(self, request: Request) -> Response:
        request.scope.setdefault("state", {})["route"] = "/health"
        if request.query_params:
            return Response(error_body(400, "INVALID_ARGUMENT", "unknown parameter (allowed: none)"), 400, media_type=JSON)
        status = self.snapshots.status()
        body = {"status": "ok" if status["version"] else "starting", "snapshot": status}
        return Response(dumps(body), status_code=200 if status["version"] else 503, media_type=JSON,
                        headers=self._headers(self.snapshots.current))


def _density_sets(params: dict[str, str], snapshot: Snapshot) -> tuple[str, ...]:
    return (DENSITY,)


def _alert_sets(params: dict[str, str], snapshot: Snapshot) -> tuple[str, ...]:
    return (ALERTS,)


def _alert_detail_sets(params: dict[str, str], snapshot: Snapshot) -> tuple[str, ...]:
    return (ALERTS, TRANSITIONS) if TRANSITIONS in snapshot.tables else (ALERTS,)


def _indicator_sets(params: dict[str, str], snapshot: Snapshot) -> tuple[str, ...]:
    dataset = params.get("dataset", "")
    if dataset in DEDICATED or dataset not in snapshot.tables:
        raise ApiError(404, "NOT_FOUND", "no published indicator dataset of that name")
    return (dataset,)


class AuditMiddleware:
    """Pure ASGI: one audit record per HTTP request, after its response (status included)."""

    def __init__(self, app, api: Api) -> None:
        self.app, self.api = app, api

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            state = scope.get("state") or {}
            log = self.api.access_log
            if log is not None:
                log.record({
                    "who": state.get("who", "-"), "token_id": state.get("token_id"),
                    "method": scope.get("method"), "route": state.get("route") or scope.get("path", "")[:200],
                    "dataset": state.get("dataset"), "params": state.get("params") or _raw_params(scope),
                    "status": status["code"], "ms": round((time.perf_counter() - started) * 1000, 2),
                })


def _raw_params(scope) -> dict[str, str]:
    query = scope.get("query_string", b"")[:400].decode("latin-1")
    return {"query": query} if query else {}


def create_app(settings: Settings, *, refresh_interval_s: float = 2.0, token_check_s: float = 0.5,
               static_dir: Path | None = None):
    """The ASGI application (audit middleware around Starlette). ``app.state.api`` is the Api."""
    api = Api(settings, refresh_interval_s=refresh_interval_s, token_check_s=token_check_s, static_dir=static_dir)

    def route(path: str, name: str, allowed: tuple[str, ...], datasets, compute, methods=("GET",), body=False) -> Route:
        async def endpoint(request: Request) -> Response:
            return await api.serve(request, name, allowed, datasets, compute, body=body)
        return Route(PREFIX + path, endpoint, methods=list(methods))

    routes = [
        Route(PREFIX + "/health", api.health, methods=["GET"]),
        route("/windows", "/windows", (), _density_sets, api.windows),
        route("/density", "/density", ("level", "window", "start", "end"), _density_sets, api.density),
        route("/density.geojson", "/density.geojson", ("level", "window"), _density_sets, api.density_geojson),
        route("/alerts", "/alerts", ("window", "state"), _alert_sets, api.alerts),
        route("/alerts.geojson", "/alerts.geojson", ("window", "state"), _alert_sets, api.alerts_geojson),
        route("/alerts/{alert_id}", "/alerts/{alert_id}", (), _alert_detail_sets, api.alert),
        route("/indicators/{dataset}", "/indicators/{dataset}", ("day", "level"), _indicator_sets, api.indicator),
        route("/camara/population-density/v0.3/retrieve", "/camara/population-density/v0.3/retrieve", (),
              _density_sets, api.camara, methods=("POST",), body=True),
        route("/exports/density.parquet", "/exports/density.parquet", ("level", "start", "end"), _density_sets,
              api.export_parquet),
    ]
    static = api.static_dir
    if static.is_dir():
        routes.append(Mount("/map", app=StaticFiles(directory=str(static), html=True), name="map"))

    async def http_error(request: Request, error: HTTPException) -> Response:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "INVALID_ARGUMENT")
        message = {404: "no such route", 405: "method not allowed on this route"}.get(error.status_code, "bad request")
        return Response(error_body(error.status_code, code, message), status_code=error.status_code, media_type=JSON,
                        headers={"Cache-Control": "no-store"})

    async def server_error(request: Request, error: Exception) -> Response:
        return Response(error_body(500, "INTERNAL", "internal error"), status_code=500, media_type=JSON)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        await run_in_threadpool(api.startup)
        try:
            yield
        finally:
            await run_in_threadpool(api.shutdown)

    starlette = Starlette(routes=routes, lifespan=lifespan,
                          exception_handlers={HTTPException: http_error, Exception: server_error})
    starlette.state.api = api
    app = AuditMiddleware(starlette, api)
    app.state = starlette.state  # type: ignore[attr-defined]
    app.api = api  # type: ignore[attr-defined]
    return app
