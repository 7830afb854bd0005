"""Events of one 15-minute window, for every subscriber, split by operator.

Per window: Poisson counts per subscriber and event type (rate x diurnal activity x personal
multiplier), periodic location updates from each phone's timer, positions from the day plan
(home, work, third place, on the road, or at a gathering) and the nearest own-operator cell.
Only one window's events are ever in memory.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pyarrow as pa

from crowd_platform.simulator import keys
from crowd_platform.simulator.gatherings import (
    GATHERING_EXTRA_DATA_PER_H,
    GATHERING_SPREAD_M,
    LOCAL_OFFSET,
    ActiveGathering,
)
from crowd_platform.simulator.population import HOME, MOVING, THIRD, WORK, DayPlan, Subscribers, make_day_plan, place_at
from crowd_platform.simulator.world import World

WINDOW_SECONDS = 15 * 60
EVENT_TYPES = ("data", "call", "sms", "location_update")
# Events per subscriber-hour at full activity (location updates come from the timer instead).
RATE_PER_HOUR = {"data": 2.0, "call": 0.25, "sms": 0.15}
# Relative activity by local hour: quiet from midnight to 5, peaks at midday and evening.
DIURNAL = np.array(
    [0.25, 0.12, 0.07, 0.05, 0.06, 0.15, 0.40, 0.70, 0.85, 0.90, 0.92, 0.95,
     1.00, 0.95, 0.90, 0.90, 0.92, 0.95, 1.00, 1.00, 0.95, 0.85, 0.65, 0.40]
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class WindowGenerator:
    """Generates windows in any order; caches day plans and daily key digests."""

    def __init__(self, world: World, subscribers: Subscribers, gatherings: list[ActiveGathering], seed: int):
        self.world = world
        self.subscribers = subscribers
        self.gatherings = gatherings
        self.seed = seed
        self._plans: dict[date, DayPlan] = {}
        self._digests: dict[tuple[str, date], np.ndarray] = {}
        self._local: np.ndarray | None = None
        self._cells: dict[str, pl.Series] = {}

    # ---- cached per day ----
    def plan(self, local_day: date) -> DayPlan:
        if local_day not in self._plans:
            if len(self._plans) >= 2:  # windows run in time order: older days are done
                self._plans.pop(min(self._plans))
            self._plans[local_day] = make_day_plan(self.subscribers, local_day, self.seed)
        return self._plans[local_day]

    def msisdns(self, who: np.ndarray) -> np.ndarray:
        """Normalised MSISDNs of these subscribers, made on demand (never kept for everyone)."""
        return keys.msisdns(who, self.subscribers.operators, self.subscribers.operator_of, self.seed)

    def _cell_series(self, operator: str) -> pl.Series:
        """The operator's cell ids as a Polars string column, gathered per window without copies to numpy."""
        if operator not in self._cells:
            self._cells[operator] = pl.Series("cell_id", self.world.networks[operator].cell_ids.tolist(), dtype=pl.String)
        return self._cells[operator]

    def local_index(self) -> np.ndarray:
        """Position of each subscriber among its own operator's subscribers (digest row)."""
        if self._local is None:
            local = np.zeros(self.subscribers.count, dtype=np.int32)
            for code in range(len(self.subscribers.operators)):
                mask = self.subscribers.operator_of == code
                local[mask] = np.arange(int(mask.sum()), dtype=np.int32)
            self._local = local
        return self._local

    def digests(self, operator: str, utc_day: date) -> np.ndarray:
        """(n_operator, 32) digests of the operator's subscribers under its key of the day."""
        cache_key = (operator, utc_day)
        if cache_key not in self._digests:
            if len(self._digests) >= len(self.subscribers.operators):  # keep one day's keys
                self._digests.pop(next(iter(self._digests)))
            code = self.subscribers.operators.index(operator)
            numbers = self.msisdns(np.flatnonzero(self.subscribers.operator_of == code))
            self._digests[cache_key] = keys.digests_for(keys.daily_key(self.seed, operator, utc_day), numbers)
        return self._digests[cache_key]

    # ---- one window ----
    def raw_window(self, window_start: datetime) -> pl.DataFrame:
        """Events as integers: subscriber, operator code, cell index, second in window, type code."""
        start_epoch = int((window_start - _EPOCH).total_seconds())
        rng = np.random.default_rng([self.seed, 5, start_epoch])
        window_end = window_start + timedelta(seconds=WINDOW_SECONDS)
        active = [g for g in self.gatherings if g.start < window_end and g.end > window_start]
        # Each part is (who, second, event type); the random draws happen in this order.
        parts = [
            *self._usage_events(rng, window_start),
            self._location_updates(start_epoch),
            *(self._gathering_usage(rng, gathering, window_start) for gathering in active),
        ]
        who, second, event_type = (np.concatenate(column) for column in zip(*parts))
        operator = self.subscribers.operator_of[who]
        cell = self._event_cells(rng, who, operator, second, window_start, active)
        frame = pl.DataFrame(
            {"who": who, "operator": operator, "cell": cell, "second": second, "event_type": event_type}
        )
        # The contract forbids duplicate (subscriber, cell, time, type) rows; times have 1 s resolution.
        return frame.unique(subset=["who", "cell", "second", "event_type"], keep="first").sort(["second", "who", "event_type", "cell"])

    def _usage_events(self, rng: np.random.Generator, window_start: datetime) -> list[tuple[np.ndarray, ...]]:
        """Data sessions, calls and SMS: Poisson counts per subscriber, uniform seconds in the window."""
        subs = self.subscribers
        activity = DIURNAL[(window_start + LOCAL_OFFSET).hour] * subs.activity
        parts = []
        for type_code, event_type in enumerate(EVENT_TYPES[:3]):
            expected = RATE_PER_HOUR[event_type] * activity * (WINDOW_SECONDS / 3600.0)
            counts = rng.poisson(expected)
            who = np.repeat(np.arange(subs.count, dtype=np.int32), counts)
            second = rng.integers(0, WINDOW_SECONDS, len(who), dtype=np.int32)
            parts.append((who, second, np.full(len(who), type_code, dtype=np.int8)))
        return parts

    def _location_updates(self, start_epoch: int) -> tuple[np.ndarray, ...]:
        """Periodic location updates: each phone's timer fires at phase + k * period."""
        subs = self.subscribers
        until_next = (subs.lu_phase_s.astype(np.int64) - start_epoch) % subs.lu_period_s
        fires = np.flatnonzero(until_next < WINDOW_SECONDS).astype(np.int32)
        return fires, until_next[fires].astype(np.int32), np.full(len(fires), EVENT_TYPES.index("location_update"), dtype=np.int8)

    @staticmethod
    def _gathering_usage(rng: np.random.Generator, gathering: ActiveGathering,
                         window_start: datetime) -> tuple[np.ndarray, ...]:
        """Extra data sessions: participants use their phones more while at the gathering."""
        lo = max(0, int((gathering.start - window_start).total_seconds()))
        hi = min(WINDOW_SECONDS, int((gathering.end - window_start).total_seconds()))
        expected = GATHERING_EXTRA_DATA_PER_H * (hi - lo) / 3600.0
        counts = rng.poisson(expected, len(gathering.participants))
        who = np.repeat(gathering.participants.astype(np.int32), counts)
        return who, rng.integers(lo, hi, len(who), dtype=np.int32), np.zeros(len(who), dtype=np.int8)

    def _event_cells(self, rng: np.random.Generator, who: np.ndarray, operator: np.ndarray, second: np.ndarray,
                     window_start: datetime, active: list[ActiveGathering]) -> np.ndarray:
        """Cell index of each event: the place's own cell, or the nearest one on the road or at a gathering."""
        subs = self.subscribers
        local = window_start + LOCAL_OFFSET
        local_h0 = local.hour + local.minute / 60.0
        place, fraction = place_at(self.plan(local.date()), who, (local_h0 + second / 3600.0).astype(np.float32))
        cell = np.full(len(who), -1, dtype=np.int32)
        for code in (HOME, WORK, THIRD):
            hit = place == code
            cell[hit] = subs.place_cell[who[hit], code]
        # Positions that need a nearest-cell query: on the road, or at a gathering.
        query = place == MOVING
        xy = np.zeros((len(who), 2), dtype=np.float64)
        moving = np.flatnonzero(query)
        xy[moving] = subs.home_xy[who[moving]] + fraction[moving, None] * (subs.work_xy[who[moving]] - subs.home_xy[who[moving]])
        for gathering in active:
            lo = (gathering.start - window_start).total_seconds()
            hi = (gathering.end - window_start).total_seconds()
            there = np.isin(who, gathering.participants) & (second >= lo) & (second < hi)
            there_rows = np.flatnonzero(there)
            xy[there_rows] = gathering.xy + rng.normal(0.0, GATHERING_SPREAD_M, (len(there_rows), 2))
            query |= there
        for code, name in enumerate(subs.operators):
            rows = np.flatnonzero(query & (operator == code))
            if len(rows):
                cell[rows] = self.world.networks[name].nearest(xy[rows])
        return cell

    def canonical(self, raw: pl.DataFrame, operator: str, window_start: datetime) -> pl.DataFrame:
        """One operator's events in canonical columns (subscriber_key, cell_id, event_time, event_type)."""
        code = self.subscribers.operators.index(operator)
        own = raw.filter(pl.col("operator") == code)
        who = own["who"].to_numpy()
        digests = np.ascontiguousarray(self.digests(operator, window_start.date())[self.local_index()[who]])
        # Fixed-size binary straight from the digest bytes, then hex in Rust: no Python loop.
        binary = pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), len(who), [None, pa.py_buffer(digests.tobytes())])
        start = pl.lit(window_start.replace(tzinfo=None), dtype=pl.Datetime("us")).dt.replace_time_zone("UTC")
        return pl.DataFrame(
            {
                "subscriber_key": pl.from_arrow(binary).cast(pl.Binary).bin.encode("hex"),
                "cell_id": self._cell_series(operator).gather(own["cell"]),
                "second": own["second"],
                "event_type": own["event_type"].replace_strict(dict(enumerate(EVENT_TYPES)), return_dtype=pl.String),
            }
        ).select(
            "subscriber_key",
            "cell_id",
            (start + pl.duration(seconds=pl.col("second"))).alias("event_time"),
            "event_type",
        )

    def msisdn_frame(self, canonical: pl.DataFrame, raw: pl.DataFrame, operator: str) -> pl.DataFrame:
        """The same events with raw '+62...' MSISDNs in place of keys (the msisdn fault)."""
        code = self.subscribers.operators.index(operator)
        who = raw.filter(pl.col("operator") == code)["who"].to_numpy()
        numbers = np.array(["+" + number for number in self.msisdns(who)], dtype=object)
        return canonical.with_columns(pl.Series("subscriber_key", numbers, dtype=pl.String))
