"""Small synthetic canonical events and cells for ingestion tests and the ingest bench.

Deterministic (seeded), never real subscribers: keys are sha256 of a counter.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone

import polars as pl

from crowd_platform.common.contracts import Contract


def mnc_of(contract: Contract) -> str:
    return contract.mnc[0] if contract.mnc else "10"


def cell_ids(contract: Contract, count: int = 20) -> list[str]:
    mnc = mnc_of(contract).zfill(2)
    return [f"510-{mnc}-{41000 + index % 7}-{100000 + index}" for index in range(count)]


def canonical_events(contract: Contract, window_start: datetime, rows: int = 200, seed: int = 7, cells: int = 20) -> pl.DataFrame:
    """Events inside [window_start, +15 min): distinct rows, valid keys, the contract's cells."""
    rng = random.Random(seed)
    ids = cell_ids(contract, cells)
    subscribers = [hashlib.sha256(f"{seed}-{index}".encode()).hexdigest() for index in range(max(rows // 3, 1))]
    base = window_start.astimezone(timezone.utc)
    records = []
    for index in range(rows):
        records.append({
            "subscriber_key": subscribers[index % len(subscribers)],
            "cell_id": ids[rng.randrange(len(ids))],
            # Whole seconds, distinct per row: no accidental duplicates, formats round-trip.
            "event_time": base + timedelta(seconds=(index * 7) % 900),
            "event_type": ("call", "sms", "data", "location_update")[index % 4],
        })
    frame = pl.DataFrame(records, schema={"subscriber_key": pl.Utf8, "cell_id": pl.Utf8,
                                          "event_time": pl.Datetime("us", "UTC"), "event_type": pl.Utf8})
    return frame.unique(maintain_order=True)


def canonical_cells(contract: Contract, cells: int = 20) -> pl.DataFrame:
    ids = cell_ids(contract, cells)
    return pl.DataFrame({
        "cell_id": ids,
        "lon": [106.80 + index * 0.001 for index in range(len(ids))],
        "lat": [-6.20 - index * 0.001 for index in range(len(ids))],
        "radio": [("GSM", "UMTS", "LTE", "NR")[index % 4] for index in range(len(ids))],
    })


def register_cells(connection, operator: str, contract: Contract, valid_from: datetime, cells: int = 20) -> None:
    """Insert registry rows directly (tests that need unknown_cell_share evaluated)."""
    for cell in cell_ids(contract, cells):
        connection.execute(
            "INSERT INTO bts_registry (cell_id, operator, site_id, lon, lat, radio, valid_from) VALUES (?, ?, ?, 106.8, -6.2, 'LTE', ?)",
            [cell, operator, cell.rsplit("-", 1)[0], valid_from],
        )
