"""Faults operators really produce, injected on request so tests can check the platform's answer.

- ``late``: the drop lands after the next windows' drops; its manifest ``created_at`` is past
  the contract's latency.
- ``duplicate``: the same bytes dropped a second time under another file name.
- ``redrop``: a corrected delivery 2 for the same window with slightly different content.
- ``corrupt``: a broken data file (truncated gzip/Parquet, or garbage inside a CSV); the
  manifest describes the broken bytes, so only parsing can catch it.
- ``msisdn``: the subscriber column holds raw '+62...' phone numbers instead of HMAC digests.

Each fault hits one (operator, window), chosen from the seed; what was done is recorded for
ground_truth.json. Records hold file names and counts, never a subscriber value.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from crowd_platform.common.contracts import Contract
from crowd_platform.simulator.drops import (
    MANIFEST_SUFFIX,
    _atomic_write,
    build_manifest,
    drop_file_name,
    encode_drop,
    to_operator_layout,
    write_drop,
)

FAULT_TYPES = ("late", "duplicate", "redrop", "corrupt", "msisdn")
LATE_BY = timedelta(minutes=50)  # past the contracts' 30-minute latency
LATE_AFTER_WINDOWS = 3  # written after this many later windows' drops
REDROP_AFTER = timedelta(minutes=40)
REDROP_REMOVED_SHARE = 0.03  # the correction drops a few rows the operator found wrong
DUPLICATE_AFTER = timedelta(minutes=3)
# gzip level for simulated drops: random hex barely compresses, so level 6 only costs time.
GZIP_LEVEL = 1


def export_delay(operator: str, window_start: datetime, seed: int) -> timedelta:
    """30-180 s between the end of a window and the manifest, like a real export (seeded)."""
    digest = hashlib.sha256(f"{seed}/{operator}/{window_start.isoformat()}".encode()).digest()
    return timedelta(seconds=30 + int.from_bytes(digest[:2], "big") % 151)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Pending:
    due_index: int
    args: dict[str, Any]


@dataclass
class FaultPlan:
    """Which (operator, window) gets which fault, and the writer that applies them."""

    targets: dict[tuple[str, datetime], str]
    window_index: dict[datetime, int]
    seed: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    _pending: list[_Pending] = field(default_factory=list)

    @classmethod
    def plan(cls, faults: set[str] | frozenset[str], windows: list[datetime], operators: list[str], seed: int,
             gzip_operators: set[str] | None = None) -> "FaultPlan":
        unknown = set(faults) - set(FAULT_TYPES)
        if unknown:
            raise ValueError(f"unknown faults: {', '.join(sorted(unknown))} (known: {', '.join(FAULT_TYPES)})")
        ordered = sorted(windows)
        index = {window: position for position, window in enumerate(ordered)}
        rng = np.random.default_rng([seed, 6])
        # Not the first window (the baseline starts clean) and, for late drops, not the very end.
        usable = ordered[1:-1] if len(ordered) > 2 else ordered
        targets: dict[tuple[str, datetime], str] = {}
        for fault in FAULT_TYPES:
            if fault not in faults or not usable or not operators:
                continue
            choices = operators
            if fault == "corrupt" and gzip_operators and set(operators) & gzip_operators:
                choices = sorted(set(operators) & gzip_operators)  # a truncated gzip is the classic case
            for _ in range(100):  # one fault per (operator, window): look for a free slot
                operator = choices[int(rng.integers(0, len(choices)))]
                window = usable[int(rng.integers(0, len(usable)))]
                if (operator, window) not in targets:
                    targets[(operator, window)] = fault
                    break
        return cls(targets=targets, window_index=index, seed=seed)

    def write(
        self,
        landing: Path,
        contract: Contract,
        events: pl.DataFrame,
        *,
        operator: str,
        window_start: datetime,
        window_end: datetime,
        key_id: str,
        raw_msisdn_events: Callable[[], pl.DataFrame],
    ) -> int:
        """Write this (operator, window) drop, with its fault if it has one; return files written."""
        fault = self.targets.get((operator, window_start))
        common = dict(window_start=window_start, window_end=window_end, key_id=key_id, operator=operator,
                      compresslevel=GZIP_LEVEL)
        record = {"type": fault, "operator": operator, "window_start": _iso(window_start)}
        if fault is None:
            write_drop(landing, contract, events, created_at=window_end + export_delay(operator, window_start, self.seed), **common)
            return 1
        if fault == "late":
            created = window_end + LATE_BY
            self._pending.append(_Pending(self.window_index[window_start] + LATE_AFTER_WINDOWS,
                                          dict(landing=landing, contract=contract, events=events, created_at=created, **common)))
            record.update(file=drop_file_name(operator, "events", window_start, 1, contract), created_at=_iso(created),
                          detail=f"written after the drops of the next {LATE_AFTER_WINDOWS} windows")
            self.records.append(record)
            return 0
        if fault == "msisdn":
            data_path, _ = write_drop(landing, contract, raw_msisdn_events(), **common)
            record.update(file=data_path.name, rows=events.height, detail="subscriber column holds raw +62 MSISDNs")
        elif fault == "duplicate":
            data_path, manifest_path = write_drop(landing, contract, events, **common)
            copy_name = data_path.name.replace("_events_", "_events_resend_", 1)
            copy_path = data_path.with_name(copy_name)
            _atomic_write(copy_path, data_path.read_bytes())
            manifest = json.loads(manifest_path.read_text())
            manifest.update(file=copy_name, created_at=_iso(window_end + DUPLICATE_AFTER))
            _atomic_write(copy_path.with_name(copy_name + MANIFEST_SUFFIX), json.dumps(manifest, indent=1).encode())
            record.update(file=data_path.name, duplicate_file=copy_name, sha256=manifest["sha256"],
                          detail="identical bytes dropped twice under two names")
        elif fault == "redrop":
            first_path, _ = write_drop(landing, contract, events, **common)
            rng = np.random.default_rng([int(window_start.timestamp()), 7])
            keep = rng.random(events.height) >= REDROP_REMOVED_SHARE
            corrected = events.filter(pl.Series(keep))
            second_path, _ = write_drop(landing, contract, corrected, delivery=2,
                                        created_at=window_end + REDROP_AFTER, **common)
            record.update(file=first_path.name, redrop_file=second_path.name, rows_delivery_1=events.height,
                          rows_delivery_2=corrected.height, detail="delivery 2 supersedes delivery 1")
        elif fault == "corrupt":
            record.update(self._write_corrupt(landing, contract, events, **common))
        self.records.append(record)
        return 2 if fault in ("duplicate", "redrop") else 1

    def _write_corrupt(self, landing: Path, contract: Contract, events: pl.DataFrame, *, window_start: datetime,
                       window_end: datetime, key_id: str, operator: str, compresslevel: int) -> dict[str, Any]:
        payload = encode_drop(to_operator_layout(events, contract), contract, compresslevel=compresslevel)
        layout = contract.layout
        if layout.get("compression") == "gzip" or layout.get("format") == "parquet":
            broken = payload[: max(1, len(payload) // 2)]
            how = "truncated gzip" if layout.get("compression") == "gzip" else "truncated parquet"
        else:
            middle = len(payload) // 2
            broken = payload[:middle] + b"\x00\xff\xfe garbage \x89PNG\r\n\x1a\n" + payload[middle + 64:]
            how = "garbage bytes inside the CSV"
        name = drop_file_name(operator, "events", window_start, 1, contract)
        data_path = landing / operator / name
        _atomic_write(data_path, broken)
        manifest = build_manifest(contract=contract, operator=operator, feed="events", file_name=name, payload=broken,
                                  row_count=events.height, window_start=window_start, window_end=window_end,
                                  delivery=1, key_id=key_id, created_at=window_end)
        _atomic_write(data_path.with_name(name + MANIFEST_SUFFIX), json.dumps(manifest, indent=1).encode())
        return {"file": name, "detail": f"{how}; the manifest describes the broken bytes"}

    def after_window(self, window_start: datetime) -> int:
        """Write late drops that are due once this window's drops are written."""
        position = self.window_index[window_start]
        due = [pending for pending in self._pending if pending.due_index <= position]
        self._pending = [pending for pending in self._pending if pending.due_index > position]
        for pending in due:
            write_drop(pending.args.pop("landing"), pending.args.pop("contract"), pending.args.pop("events"), **pending.args)
        return len(due)

    def finish(self) -> int:
        """Write late drops still waiting when the simulated period ends."""
        written = 0
        for pending in self._pending:
            write_drop(pending.args.pop("landing"), pending.args.pop("contract"), pending.args.pop("events"), **pending.args)
            written += 1
        self._pending = []
        return written
