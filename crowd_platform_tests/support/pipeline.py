"""The small simulated week every pipeline test reads, and time helpers (no test here)."""

from __future__ import annotations

import gzip
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

# Gathering injected on the last simulated day (Friday 27 March 2020, Friday prayer at
# Masjid Istiqlal, Kelurahan Pasar Baru, Kecamatan Sawah Besar): 11:30-13:30 WIB = 04:30-06:30 UTC.
E2E_START = date(2020, 3, 23)
E2E_DAYS = 5
E2E_SUBSCRIBERS = 4000
E2E_HOURS = (3, 8)  # UTC hours simulated each day (10:00-15:00 WIB): keeps the suite fast
E2E_GATHERING = {
    "id": "istiqlal-friday-prayer",
    "site": "Masjid Istiqlal",
    "kind": "friday prayer",
    "lon": 106.8313,
    "lat": -6.1702,
    "start": "2020-03-27T04:30:00Z",
    "end": "2020-03-27T06:30:00Z",
    "extra_subscribers": 700,
}
# A few thousand simulated subscribers stand for 11 million people: absolute excess
# thresholds are those of the sampled rules file (same statistics, smaller minimum excess).
SAMPLED_RULES = "config/alert_rules_sampled.yaml"
E2E_FAULTS = ("late", "duplicate", "redrop", "msisdn")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def window_range(start: str, end: str) -> list[datetime]:
    current, stop, windows = utc(start), utc(end), []
    while current < stop:
        windows.append(current)
        current += timedelta(minutes=15)
    return windows


_MSISDN = re.compile(r"^\+?(?:62|0)8[0-9]{8,11}$")


def sample_raw_msisdns(landing: Path, faults: list[dict], limit: int = 200) -> tuple[str, ...]:
    """Phone numbers in the simulator's ``msisdn`` fault drops, read before the platform sees
    them: it deletes such a drop on arrival, so they cannot be read afterwards. Every value of
    every column is tried (the drop may be CSV, gzip or Parquet, in its operator's layout)."""
    import polars as pl

    found: set[str] = set()
    for fault in faults:
        if fault.get("type") != "msisdn":
            continue
        path = landing / fault["operator"] / fault["file"]
        raw = path.read_bytes()
        if raw[:4] == b"PAR1":
            frame = pl.read_parquet(path)
        else:
            text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            frame = pl.read_csv(text, infer_schema_length=0, has_header=False, separator=_separator(text))
        for column in frame.columns:
            values = frame[column].cast(pl.String, strict=False).drop_nulls().to_list()
            found.update(value for value in values if _MSISDN.match(value.strip()))
            if len(found) >= limit:
                break
    return tuple(sorted(found)[:limit])


def _separator(text: bytes) -> str:
    first = text.split(b"\n", 1)[0].decode("utf-8", "replace")
    return max((",", ";", "|", "\t"), key=first.count)
