"""The drops of a run are parsed side by side (ingestion.parse_workers), each on its own DuckDB
cursor, while receiving and deciding stay one at a time. Side by side must decide exactly as one
after another: the same outcomes and reasons, the same rule results, the same staged rows, an
unbroken audit chain; and a stop signal inside a parse thread must stop the run with the drops
left 'received' for crash recovery, not quarantined."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from crowd_platform.common.contracts import operator_contracts
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform.governance.audit_chain import verify_chain
from crowd_platform.ingestion import ingest
from crowd_platform.ingestion.drops import staging_file
from crowd_platform.ingestion.fixtures import canonical_events
from crowd_platform.ingestion.ingest import PendingDrop, ingest_drops
from crowd_platform.ingestion.landing import scan_landing
from crowd_platform.simulator.drops import write_drop

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)
WINDOW_END = WINDOW + timedelta(minutes=15)


def _land(settings) -> None:
    """Every operator's drop in its own layout (gzip CSV, CSV, Parquet), a second delivery of one
    (another drop), a truncated gzip (parse failure), a resend of identical bytes (duplicate) and a
    drop whose header is not the contract's (parse failure)."""
    contracts = operator_contracts(settings.contracts_dir)
    for number, (operator, contract) in enumerate(sorted(contracts.items())):
        write_drop(settings.landing, contract, canonical_events(contract, WINDOW, 400, seed=number + 1),
                   window_start=WINDOW, window_end=WINDOW_END)
    telkomsel = contracts["telkomsel"]
    assert telkomsel.layout.get("compression") == "gzip"
    paths = write_drop(settings.landing, telkomsel, canonical_events(telkomsel, WINDOW, 300, seed=99),
                       window_start=WINDOW, window_end=WINDOW_END, delivery=2)
    data = next(path for path in paths if not path.name.endswith(".manifest.json"))
    _rewrite(data, data.read_bytes()[: data.stat().st_size // 2])  # a gzip stream cut in the middle
    # The same bytes as tri's drop above, sent again as delivery 3: a duplicate.
    write_drop(settings.landing, contracts["tri"], canonical_events(contracts["tri"], WINDOW, 400, seed=sorted(contracts).index("tri") + 1),
               window_start=WINDOW, window_end=WINDOW_END, delivery=3)
    indosat = contracts["indosat"]
    paths = write_drop(settings.landing, indosat, canonical_events(indosat, WINDOW, 200, seed=5),
                       window_start=WINDOW, window_end=WINDOW_END, delivery=2)
    data = next(path for path in paths if not path.name.endswith(".manifest.json"))
    text = data.read_bytes().decode("utf-8").split("\n", 1)
    _rewrite(data, ("wrong,header,names,here\n" + text[1]).encode("utf-8"))


def _rewrite(data_path, payload: bytes) -> None:
    """New bytes for a drop, its manifest told the truth about them (the damage is in the content)."""
    import hashlib

    data_path.write_bytes(payload)
    manifest_path = data_path.with_name(data_path.name + ".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest.update(sha256=hashlib.sha256(payload).hexdigest(), bytes=len(payload))
    manifest_path.write_text(json.dumps(manifest))


def _pending(settings) -> list[PendingDrop]:
    scan = scan_landing(settings.landing, settings.contracts_dir, window_range=(WINDOW, WINDOW_END))
    drops = sorted(scan.routable, key=lambda drop: (drop.manifest.window_start, drop.operator_dir, drop.manifest.delivery))
    return [PendingDrop(settings.landing / drop.operator_dir, drop.manifest_name, drop.manifest) for drop in drops]


def _ingest(tmp_path, name: str, workers: int, chunk: int = 32):
    settings = get_settings(str(tmp_path / name))
    settings.ensure_dirs()
    _land(settings)
    pending = _pending(settings)
    # Opened for each write phase and closed in between, as the asset does.
    outcomes = ingest_drops(settings, lambda: connect(settings.warehouse_path), pending, run_id="run",
                            parse_workers=workers, chunk=chunk)
    return settings, outcomes


def _decisions(settings):
    with connect(settings.warehouse_path, read_only=True) as con:
        drops = con.execute("SELECT drop_id, status, status = 'received' AND validated_at IS NOT NULL, reason, rows_loaded FROM drops "
                            "ORDER BY drop_id").fetchall()
        rules = con.execute("SELECT drop_id, rule, engine, passed, unexpected_count FROM check_results "
                            "ORDER BY drop_id, rule, engine").fetchall()
        verified = verify_chain(con)
    staged = {}
    for drop_id, _status, validated, _reason, _rows in drops:
        if validated:
            path = staging_file(settings, drop_id, "events")
            staged[drop_id] = duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY ALL").fetchall()
    return drops, rules, staged, verified


def test_side_by_side_decides_exactly_as_one_after_another(tmp_path):
    serial_settings, serial = _ingest(tmp_path, "serial", workers=1)
    parallel_settings, parallel = _ingest(tmp_path, "parallel", workers=4, chunk=3)  # chunks cut through the batch
    assert [(o.drop_id, o.status, o.reason, o.rows) for o in serial] == [(o.drop_id, o.status, o.reason, o.rows) for o in parallel]
    statuses = sorted(o.status for o in parallel)
    assert statuses.count("validated") == len(operator_contracts(serial_settings.contracts_dir))
    assert statuses.count("quarantined") == 2 and statuses.count("duplicate") == 1, statuses
    reasons = sorted(o.reason or "" for o in parallel if o.status == "quarantined")
    assert all(reason.startswith("parse failed:") and "\n" not in reason for reason in reasons), reasons
    serial_drops, serial_rules, serial_staged, _ = _decisions(serial_settings)
    parallel_drops, parallel_rules, parallel_staged, verified = _decisions(parallel_settings)
    assert serial_drops == parallel_drops and serial_rules == parallel_rules
    assert serial_staged == parallel_staged and len(parallel_staged) == statuses.count("validated")
    assert verified.ok, verified


def test_a_stop_signal_in_a_parse_thread_stops_the_run_and_leaves_drops_received(tmp_path, monkeypatch):
    settings = get_settings(str(tmp_path / "home"))
    settings.ensure_dirs()
    _land(settings)
    pending = _pending(settings)
    real_stage = ingest.stage_drop

    def stage_or_stop(connection, data_path, contract, target, keep_table=None):
        if "xl" in str(target) or contract.layout.get("format") == "parquet":
            raise KeyboardInterrupt  # the worker is being stopped
        return real_stage(connection, data_path, contract, target, keep_table=keep_table)

    monkeypatch.setattr(ingest, "stage_drop", stage_or_stop)
    with pytest.raises(KeyboardInterrupt):
        ingest_drops(settings, lambda: connect(settings.warehouse_path), pending, run_id="run", parse_workers=4)
    with connect(settings.warehouse_path, read_only=True) as con:
        statuses = dict(con.execute("SELECT status, count(*) FROM drops GROUP BY status").fetchall())
    # Received (raw copy and row committed), none decided: recovery re-lands them from raw/.
    assert statuses.get("received", 0) >= 5 and not statuses.get("quarantined") and not statuses.get("validated"), statuses
