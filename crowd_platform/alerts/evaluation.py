"""Detection quality: crowd_alerts against the simulator's ground truth (used by
`crowd-platform evaluate` and bench/eval_detection.py).

An alert matches a gathering when it is at the gathering's place (the same kelurahan, its
kecamatan or kab/kota, or a site within --radius-m of it or mostly covering its kelurahan) and
was opened between the gathering's first window and its end plus --late-windows windows.
Reports precision, recall per size band, detection latency (windows after the start) and
false alerts per 100 districts per normal (non-holiday) day. A gathering's size is the people
it adds to its kelurahan (ground truth `people_added`: participants who would otherwise have
been elsewhere), not its participants.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from crowd_platform.common.calendar import holiday_dates as holiday_dates_between, local_slot
from crowd_platform.common.settings import DensitySection, get_settings
from crowd_platform.common.timeutil import parse_utc

GROUND_TRUTH_FIELDS = {"id", "kelurahan_code", "kecamatan_code", "lon", "lat", "start", "end", "people_equivalent"}


class EvaluationError(ValueError):
    """Ground truth or warehouse that cannot be evaluated (one line)."""


def load_ground_truth(path: Path) -> list[dict[str, Any]]:
    """The gatherings of a simulator ground-truth file, each with the fields evaluation needs."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise EvaluationError(f"{path.name} is not JSON ({error.msg})") from None
    gatherings = document.get("gatherings") if isinstance(document, dict) else document
    if not isinstance(gatherings, list):
        raise EvaluationError(f"{path.name} has no list of gatherings")
    for gathering in gatherings:
        missing = GROUND_TRUTH_FIELDS - set(gathering)
        if missing:
            raise EvaluationError(f"gathering {gathering.get('id', '?')} lacks {', '.join(sorted(missing))}")
    return gatherings


SIZE_BANDS = ((0, 500, "< 500 people"), (500, 2000, "500-1999 people"), (2000, math.inf, ">= 2000 people"))
TARGETS = {"recall_target_group": 0.9, "precision": 0.9, "false_alerts_per_100_districts_per_day": 1.0,
           "max_latency_windows": 2}


@dataclass(frozen=True)
class Alert:
    alert_id: str
    level: str
    place_id: str
    opened_window: datetime
    site_lon: float | None = None
    site_lat: float | None = None
    site_kelurahan: str | None = None


def _parse_time(text: str) -> datetime:
    return parse_utc(text, what="gathering time")


def _floor_window(moment: datetime, minutes: int) -> datetime:
    return moment - timedelta(minutes=moment.minute % minutes, seconds=moment.second, microseconds=moment.microsecond)


def _distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    dx = (lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2)) * 111_320.0
    dy = (lat2 - lat1) * 110_574.0
    return math.hypot(dx, dy)


def matches(alert: Alert, gathering: dict[str, Any], kabkota_of: dict[str, str], window_minutes: int,
            radius_m: float, late_windows: int) -> bool:
    start = _floor_window(_parse_time(gathering["start"]), window_minutes)
    end = _parse_time(gathering["end"]) + timedelta(minutes=window_minutes * late_windows)
    if not (start <= alert.opened_window <= end):
        return False
    if alert.level == "site":
        near = (alert.site_lon is not None and
                _distance_m(alert.site_lon, alert.site_lat, gathering["lon"], gathering["lat"]) <= radius_m)
        return near or alert.site_kelurahan == gathering["kelurahan_code"]
    places = {gathering["kelurahan_code"], gathering["kecamatan_code"]}
    if gathering["kecamatan_code"] in kabkota_of:
        places.add(kabkota_of[gathering["kecamatan_code"]])
    return alert.place_id in places


def gathering_size(gathering: dict[str, Any]) -> float:
    """People the gathering adds to its kelurahan (the issue's target: "gatherings that add at least
    2 000 people within one kelurahan"); participants (people_equivalent) for ground truth written
    before the simulator recorded people_added."""
    added = gathering.get("people_added")
    return float(added) if added is not None else float(gathering["people_equivalent"])


def size_band(people: float) -> str:
    return next(label for low, high, label in SIZE_BANDS if low <= people < high)


def evaluate(alerts: list[Alert], gatherings: list[dict[str, Any]], *, kabkota_of: dict[str, str],
             district_count: int, site_count: int, normal_days: float, holiday_dates: set,
             window_minutes: int = 15, radius_m: float = 1500.0, late_windows: int = 2,
             local_timezone: str = "UTC") -> dict[str, Any]:
    """Metrics from alerts and gatherings (pure: the CLI loads the inputs). ``holiday_dates`` are
    local dates in ``local_timezone`` (density.local_timezone, passed on by :func:`load_inputs`)."""
    matched_alerts: set[str] = set()
    per_gathering = []
    for gathering in gatherings:
        hits = [alert for alert in alerts
                if matches(alert, gathering, kabkota_of, window_minutes, radius_m, late_windows)]
        matched_alerts.update(alert.alert_id for alert in hits)
        start = _floor_window(_parse_time(gathering["start"]), window_minutes)
        duration_min = (_parse_time(gathering["end"]) - _parse_time(gathering["start"])).total_seconds() / 60
        latency = None
        if hits:
            first = min(alert.opened_window for alert in hits)
            latency = int((first - start) / timedelta(minutes=window_minutes))
        size = gathering_size(gathering)
        per_gathering.append({
            "id": gathering["id"], "place": gathering.get("kelurahan_name"), "start": gathering["start"],
            "people_equivalent": gathering["people_equivalent"], "people_added": gathering.get("people_added"),
            "duration_min": round(duration_min),
            "band": size_band(size), "detected": bool(hits), "latency_windows": latency,
            "alerts": len(hits),
            "in_target_group": size >= 2000 and duration_min >= 30,
        })
    recall_by_band = {}
    for _, _, label in SIZE_BANDS:
        band = [row for row in per_gathering if row["band"] == label]
        recall_by_band[label] = {"gatherings": len(band), "detected": sum(row["detected"] for row in band),
                                 "recall": (sum(row["detected"] for row in band) / len(band)) if band else None}
    target = [row for row in per_gathering if row["in_target_group"]]
    on_time = [row for row in target if row["detected"] and row["latency_windows"] <= TARGETS["max_latency_windows"]]
    latencies = sorted(row["latency_windows"] for row in per_gathering if row["latency_windows"] is not None)
    unmatched = [alert for alert in alerts if alert.alert_id not in matched_alerts]
    normal_unmatched = [alert for alert in unmatched
                        if local_slot(alert.opened_window, local_timezone)[0] not in holiday_dates]
    district_false = sum(1 for alert in normal_unmatched if alert.level != "site")
    site_false = sum(1 for alert in normal_unmatched if alert.level == "site")

    def rate(count: int, units: int) -> float | None:
        return round(count / (units / 100) / normal_days, 3) if units and normal_days else None

    return {
        "alerts": len(alerts),
        "alerts_matching_a_gathering": len(matched_alerts),
        "precision": round(len(matched_alerts) / len(alerts), 3) if alerts else None,
        "gatherings": len(gatherings),
        "recall_by_band": recall_by_band,
        "target_group": {"gatherings": len(target), "detected": sum(row["detected"] for row in target),
                         "recall": round(sum(row["detected"] for row in target) / len(target), 3) if target else None,
                         "detected_within_2_windows": len(on_time),
                         "recall_within_2_windows": round(len(on_time) / len(target), 3) if target else None},
        "latency_windows": {"median": latencies[len(latencies) // 2] if latencies else None,
                            "max": latencies[-1] if latencies else None, "values": latencies},
        "false_alerts": {"districts": district_false, "sites": site_false, "normal_days": round(normal_days, 3),
                         "district_count": district_count, "site_count": site_count,
                         "per_100_districts_per_normal_day": rate(district_false, district_count),
                         "per_100_sites_per_normal_day": rate(site_false, site_count)},
        "per_gathering": per_gathering,
        "targets": TARGETS,
    }


def load_inputs(con: Any, rules_levels: tuple[str, ...], window_minutes: int, days: set | None = None,
                area: list[str] | None = None, calendar: DensitySection | None = None) -> dict[str, Any]:
    """Alerts (with site positions), hierarchy and exposure (evaluated windows) from the warehouse.

    ``days`` (UTC dates) keeps alerts opened and windows evaluated on those days; ``area``
    (kecamatan codes or names) counts only the districts of those kecamatan (the kecamatan and
    their kelurahan) in the per-100-districts denominator. ``calendar``: the area's time zone and
    holidays (default: density section of the configuration, get_settings()).
    """
    calendar = calendar or get_settings().config.density
    alerts = []
    from crowd_platform.common.warehouse import read_sql

    rows = con.execute(read_sql("alerts/evaluation_alerts")).fetchall()
    for alert_id, level, place_id, opened, lon, lat, kelurahan in rows:
        opened = opened.astimezone(timezone.utc)
        if days is None or opened.date() in days:
            alerts.append(Alert(alert_id, level, place_id, opened, lon, lat, kelurahan))
    kabkota_of = dict(con.execute("SELECT district_code, parent_code FROM districts WHERE level = 'kecamatan'").fetchall())
    district_levels = [level for level in rules_levels if level != "site"]
    if area:
        wanted = [name.strip() for name in area]
        kecamatan = [code for (code,) in con.execute(
            "SELECT district_code FROM districts WHERE level = 'kecamatan' AND "
            "(list_contains(?, lower(name)) OR list_contains(?, district_code))",
            [[name.lower() for name in wanted], wanted]).fetchall()]
        if len(kecamatan) < len(wanted):
            raise ValueError(f"area names {len(wanted)} kecamatan but {len(kecamatan)} are known")
        district_count = con.execute(
            "SELECT count(*) FROM districts WHERE is_admin_unit AND list_contains(?, level) AND "
            "(list_contains(?, district_code) OR list_contains(?, parent_code))",
            [district_levels, kecamatan, kecamatan]).fetchone()[0]
    else:
        district_count = con.execute("SELECT count(*) FROM districts WHERE is_admin_unit AND list_contains(?, level)",
                                     [district_levels]).fetchone()[0]
    site_count = con.execute("SELECT count(DISTINCT place_id) FROM density_baseline WHERE level = 'site'").fetchone()[0]
    windows = [row[0].astimezone(timezone.utc) for row in con.execute(
        "SELECT window_start FROM alert_evaluations WHERE evaluated").fetchall()]
    if days is not None:
        windows = [window for window in windows if window.date() in days]
    zone = calendar.local_timezone
    local_dates = {local_slot(window, zone)[0] for window in windows}
    holiday_dates = set(holiday_dates_between(calendar.holidays_country, min(local_dates), max(local_dates),
                                              calendar.extra_holidays)) & local_dates if local_dates else set()
    normal_windows = [window for window in windows if local_slot(window, zone)[0] not in holiday_dates]
    return {"alerts": alerts, "kabkota_of": kabkota_of, "district_count": district_count, "site_count": site_count,
            "normal_days": len(normal_windows) * window_minutes / (24 * 60), "holiday_dates": holiday_dates,
            "local_timezone": zone}


