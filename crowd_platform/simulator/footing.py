"""How much the demo simulates: its footing.

The demo tells one story (three baseline days, a quiet day, a gathering day; report,
retention, verification). What it costs is almost all per 15-minute window: one drop per
operator to ingest and validate, and Dagster's events for every window partition of every
window asset. The default footing keeps the windows that tell the story; ``FULL_FOOTING`` is
the full-size week (every window of every day).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path


@dataclass(frozen=True)
class Footing:
    days: int
    subscribers: int
    hours: tuple[int, int] | None  # [from, to) UTC hours of each day; None = all day
    # Drops per run that GX cross-checks besides the DuckDB rules (~0.4 s each whatever their
    # size); None = the platform's ingestion.gx_drops_per_run (40).
    gx_drops_per_run: int | None = None

    def describe(self, days: bool = True) -> str:
        hours = "all day" if self.hours is None else f"UTC hours {self.hours[0]:02d}-{self.hours[1]:02d} of each day"
        gx = "" if self.gx_drops_per_run is None else f", GX cross-check of {self.gx_drops_per_run} drops per run"
        return (f"{self.days} days, " if days else "") + f"{self.subscribers:,} subscribers, {hours}{gx}"

    @property
    def windows(self) -> int:
        per_day = 96 if self.hours is None else 4 * (self.hours[1] - self.hours[0])
        return self.days * per_day

    def with_overrides(self, *, days: int | None = None, subscribers: int | None = None, hours=...) -> "Footing":
        """Command-line overrides (None / ... = keep the footing's)."""
        return replace(self, days=self.days if days is None else days,
                       subscribers=self.subscribers if subscribers is None else subscribers,
                       hours=self.hours if hours is ... else hours)


# Mon-Fri: 3 days of bootstrap baseline, a quiet Thursday, the gatherings' Friday. The hours
# hold the Friday prayer at Masjid Istiqlal (11:30 WIB = 04:30 UTC); the other gatherings move
# into them (simulator/gatherings.py). Measured: see README "What the demo shows".
DEMO_FOOTING = Footing(days=5, subscribers=30_000, hours=(4, 6), gx_drops_per_run=5)
FULL_FOOTING = Footing(days=5, subscribers=30_000, hours=None)


def footing_config(footing: Footing, base: Path, out: Path) -> Path | None:
    """A copy of the platform configuration ``base`` with the footing's GX budget, written to
    ``out``; None when the footing keeps the platform's own (nothing to write)."""
    if footing.gx_drops_per_run is None:
        return None
    import yaml

    document = yaml.safe_load(base.read_text(encoding="utf-8")) or {}
    document.setdefault("ingestion", {})["gx_drops_per_run"] = footing.gx_drops_per_run
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {base} with the demo footing's GX budget (crowd-platform demo writes this file)\n"
                   + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def fit_gatherings(gatherings: list[dict], hours: tuple[int, int] | None, min_minutes: int = 60) -> list[dict]:
    """The gatherings, each inside the simulated hours of its day.

    A gathering that does not start at least ``min_minutes`` before the end of the simulated
    hours would not be simulated (or too little to alert on) yet stay in the ground truth as a
    miss: it moves to the start of the hours, staggered by a window per moved gathering, and
    lasts what is left of them at most. Gatherings already inside keep their time."""
    if hours is None:
        return gatherings
    window = timedelta(minutes=15)
    fitted, moved = [], 0
    for gathering in gatherings:
        start, end = _utc(gathering["start"]), _utc(gathering["end"])
        midnight = datetime.combine(start.date(), datetime.min.time(), tzinfo=timezone.utc)
        low, high = midnight + timedelta(hours=hours[0]), midnight + timedelta(hours=hours[1])
        if low <= start and start + timedelta(minutes=min_minutes) <= high:
            fitted.append(gathering)
            continue
        new_start = min(low + moved * window, high - timedelta(minutes=min_minutes))
        moved += 1
        new_end = min(new_start + (end - start), high)
        fitted.append({**gathering, "start": _iso(new_start), "end": _iso(new_end)})
    return fitted


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
