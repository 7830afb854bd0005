"""Write one operator drop (data file + manifest) in the layout its data contract declares.

The inverse of ingestion's parsing: canonical events in, the operator's own column names,
delimiter, time format, time zone, value codes and compression out. Used by the simulator
and by tests that need hand-made drops. The manifest is written last, atomically, because a
drop without a manifest is not complete (docs/design.md section 6).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from crowd_platform.common import storage
from crowd_platform.common.contracts import ColumnSpec, Contract

MANIFEST_SUFFIX = ".manifest.json"


def _atomic_write(path: Path, payload: bytes) -> None:
    if not storage.is_local(path):
        storage.write_bytes(path, payload)  # one PUT: the key appears complete or not at all
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _format_times(column: pl.Expr, contract: Contract, spec: ColumnSpec | None = None) -> pl.Expr:
    options = spec.options if spec is not None and "format" in spec.options else contract.column("event_time").options
    time_format = options.get("format", "%Y-%m-%dT%H:%M:%SZ")
    zone = options.get("timezone", "UTC")
    if time_format == "epoch_ms":
        return column.dt.epoch("ms")
    if time_format == "epoch_s":
        return column.dt.epoch("s")
    return column.dt.convert_time_zone(zone).dt.strftime(time_format)


def _physical_value(events: pl.DataFrame, spec: ColumnSpec, contract: Contract) -> pl.Expr:
    """One canonical column written the way the contract says the file spells it."""
    if spec.name not in events.columns:
        return pl.lit(None, dtype=pl.Utf8)  # e.g. a store: false column the caller did not supply
    column = pl.col(spec.name)
    if spec.logical_type == "timestamp":
        return _format_times(column, contract, spec)
    if spec.logical_type == "date":
        return column.dt.strftime(str(spec.options.get("format", "%Y-%m-%d")))
    if spec.logical_type == "boolean":
        trues, falses = spec.custom.get("true_values", ["true"]), spec.custom.get("false_values", ["false"])
        first = lambda values: str((values if isinstance(values, list) else [values])[0])  # noqa: E731
        return pl.when(column).then(pl.lit(first(trues))).when(column.not_()).then(pl.lit(first(falses)))
    if spec.custom.get("value_map"):
        inverse = {canonical: code for code, canonical in spec.custom["value_map"].items()}
        return column.replace_strict(inverse, default=column)
    return column


def to_operator_layout(events: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """Canonical columns -> the operator's physical columns, in contract order.

    Constants are not written (the contract supplies them); a ``store: false`` column is
    written from ``events`` when it has one, else empty."""
    expressions: dict[str, pl.Expr] = {}
    for spec in contract.columns:
        if spec.is_constant:
            continue
        if spec.name == "cell_id" and spec.transform_sources:
            parts = pl.col("cell_id").str.split_exact("-", 3)
            mapping = spec.custom.get("source_columns") or {}
            for index, source in enumerate(spec.transform_sources):
                name = str(mapping.get(source, source))
                expressions[name] = parts.struct.field(f"field_{index}").alias(name)
            continue
        name = spec.physical_name or spec.name
        expressions.setdefault(name, _physical_value(events, spec, contract).alias(name))
    return events.select(list(expressions.values()))


def encode_drop(frame: pl.DataFrame, contract: Contract, *, compresslevel: int = 6) -> bytes:
    """Bytes of the data file: CSV (delimiter, header) or Parquet, then compression.

    ``compresslevel`` (gzip only): the simulator uses 1, since 64-hex keys barely compress and
    level 6 spends most of a large run in zlib.
    """
    layout = contract.layout
    if layout.get("format") == "parquet":
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression=layout.get("compression", "snappy"))
        return buffer.getvalue()
    text = frame.write_csv(separator=layout.get("delimiter", ","), include_header=layout.get("header", True))
    payload = text.encode(layout.get("encoding", "utf-8"))
    if layout.get("compression") == "gzip":
        # mtime=0 keeps bytes deterministic for a given seed (same sha256 on a re-run).
        payload = gzip.compress(payload, compresslevel=compresslevel, mtime=0)
    return payload


def drop_file_name(operator: str, feed: str, window_start: datetime, delivery: int, contract: Contract) -> str:
    stamp = window_start.astimezone(timezone.utc).strftime("%Y%m%dT%H%MZ")
    suffix = f"_d{delivery}" if delivery > 1 else ""
    return f"{operator}_{feed}_{stamp}{suffix}{contract.layout.get('extension', '.csv')}"


def build_manifest(
    *,
    contract: Contract,
    operator: str,
    feed: str,
    file_name: str,
    payload: bytes,
    row_count: int,
    window_start: datetime,
    window_end: datetime,
    delivery: int,
    key_id: str,
    created_at: datetime,
) -> dict[str, Any]:
    def iso(moment: datetime) -> str:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        "manifest_version": 1,
        "operator": operator,
        "feed": feed,
        "contract_version": contract.version,
        "file": file_name,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
        "row_count": row_count,
        "window_start": iso(window_start),
        "window_end": iso(window_end),
        "delivery": delivery,
        "pseudonymization": {"scheme": "hmac-sha256", "key_id": key_id},
        "created_at": iso(created_at),
    }


def write_drop(
    landing: Path,
    contract: Contract,
    events: pl.DataFrame,
    *,
    window_start: datetime,
    window_end: datetime,
    delivery: int = 1,
    key_id: str | None = None,
    created_at: datetime | None = None,
    feed: str = "events",
    operator: str | None = None,
    write_manifest: bool = True,
    compresslevel: int = 6,
) -> tuple[Path, Path]:
    """Write ``landing/<operator>/<file>`` then its manifest; return both paths.

    ``events`` has the canonical columns of the contract's schema (for events:
    subscriber_key, cell_id, event_time as UTC datetime, event_type).
    """
    operator = operator or contract.operator or "unknown"
    frame = to_operator_layout(events, contract) if feed == "events" else events
    payload = encode_drop(frame, contract, compresslevel=compresslevel)
    file_name = drop_file_name(operator, feed, window_start, delivery, contract)
    data_path = landing / operator / file_name
    _atomic_write(data_path, payload)
    manifest = build_manifest(
        contract=contract,
        operator=operator,
        feed=feed,
        file_name=file_name,
        payload=payload,
        row_count=frame.height,
        window_start=window_start,
        window_end=window_end,
        delivery=delivery,
        key_id=key_id or f"{operator[:4]}-{window_start:%Y%m%d}",
        created_at=created_at or window_end,
    )
    manifest_path = data_path.with_name(file_name + MANIFEST_SUFFIX)
    if write_manifest:
        _atomic_write(manifest_path, json.dumps(manifest, indent=1).encode())
    return data_path, manifest_path
