"""What ingestion leaves behind for a drop (raw copy, lake Parquet, drops row), written
directly so retention, sunset and privacy-scan tests can plant known keys (no test here)."""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timedelta, timezone

import polars as pl

from crowd_platform.common.contracts import operator_contracts
from crowd_platform.common.warehouse import connect
from crowd_platform.simulator.drops import write_drop

OLD_WINDOW = datetime(2020, 3, 30, 1, 0, tzinfo=timezone.utc)
NEW_WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)


def _events(window_start: datetime, keys: list[str]) -> pl.DataFrame:
    return pl.DataFrame({
        "subscriber_key": keys,
        "cell_id": [f"510-10-41004-{1000 + i}" for i in range(len(keys))],
        "event_time": [window_start + timedelta(seconds=30 + i) for i in range(len(keys))],
        "event_type": ["data"] * len(keys),
    }).with_columns(pl.col("event_time").dt.replace_time_zone("UTC"))


def ingest_like(settings, drop_id: str, window_start: datetime, keys: list[str], status: str = "accepted") -> None:
    """What ingestion leaves behind for one drop: raw copy + manifest, lake Parquet, drops row."""
    contract = operator_contracts(settings.contracts_dir)["telkomsel"]
    events = _events(window_start, keys)
    data_path, manifest_path = write_drop(settings.landing, contract, events, window_start=window_start,
                                          window_end=window_start + timedelta(minutes=15))
    sha = hashlib.sha256(data_path.read_bytes()).hexdigest()
    raw = settings.raw / f"{sha}.csv.gz"
    shutil.copy(data_path, raw)
    shutil.copy(manifest_path, settings.raw / f"{sha}.csv.gz.manifest.json")
    data_path.unlink()
    manifest_path.unlink()
    lake = settings.events_lake / f"date={window_start:%Y-%m-%d}" / f"window={window_start:%H%M}" / "operator=telkomsel" / f"{drop_id}.parquet"
    quarantine = None
    if status == "quarantined":
        quarantine = settings.quarantine / drop_id
        quarantine.mkdir(parents=True)
        shutil.move(raw, quarantine / raw.name)
        shutil.move(settings.raw / f"{sha}.csv.gz.manifest.json", quarantine / "manifest.json")
        (quarantine / "report.json").write_text('{"reasons": ["subscriber_key_is_hmac_digest"]}')
        raw, lake = None, None
    else:
        lake.parent.mkdir(parents=True, exist_ok=True)
        events.write_parquet(lake)
    with connect(settings.warehouse_path) as con:
        con.execute(
            "INSERT INTO drops (drop_id, operator, feed, sha256, window_start, window_end, status, raw_path, lake_path, "
            "quarantine_path, contract_id, contract_version) VALUES (?, 'telkomsel', 'events', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [drop_id, sha, window_start, window_start + timedelta(minutes=15), status,
             str(raw.relative_to(settings.home)) if raw else None, str(lake) if lake else None,
             str(quarantine) if quarantine else None, contract.contract_id, contract.version],
        )
