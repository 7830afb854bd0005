"""Drop lifecycle through real Dagster runs: re-drops, superseding, late drops, partial
uploads, cells, and a sixth operator added by a YAML contract only."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from crowd_platform.ingestion.assets import operator_drops, staged_events
from crowd_platform.ingestion.sensors import evaluate_landing
from crowd_platform.common.contracts import contract_for, parse_contract
from crowd_platform.ingestion.fixtures import canonical_cells, canonical_events
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import CONTRACTS_DIR, get_settings
from crowd_platform.simulator.drops import write_drop

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)
WINDOW_END = WINDOW + timedelta(minutes=15)
PARTITION = "2020-03-31-01:00"


def _run(home: Path, partition: str = PARTITION) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        result = dg.materialize([operator_drops, staged_events], resources={"crowd": CrowdPlatform(home=str(home))},
                                instance=instance, partition_key=partition)
        assert result.success
        return result


def _drops(home: Path) -> list[dict]:
    with duckdb.connect(str(get_settings(home).warehouse_path), read_only=True) as con:
        cursor = con.execute("SELECT * FROM drops ORDER BY received_at")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def _audit_actions(home: Path) -> list[str]:
    with duckdb.connect(str(get_settings(home).warehouse_path), read_only=True) as con:
        return [row[0] for row in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()]


@pytest.fixture
def home(tmp_path):
    get_settings(tmp_path).ensure_dirs()
    return tmp_path


def _telkomsel(settings):
    return contract_for(settings.contracts_dir, "telkomsel", "events")


def test_accepted_drop_lands_in_lake_with_utc_times(home):
    settings = get_settings(home)
    contract = _telkomsel(settings)
    events = canonical_events(contract, WINDOW, 120)
    write_drop(settings.landing, contract, events, window_start=WINDOW, window_end=WINDOW_END)
    _run(home)
    (drop,) = _drops(home)
    assert drop["status"] == "accepted" and drop["rows_loaded"] == 120
    lake = settings.resolve(drop["lake_path"])
    assert lake.parent == settings.events_lake / "date=2020-03-31" / "window=0100" / "operator=telkomsel"
    staged = pl.read_parquet(lake)
    assert staged.columns == ["subscriber_key", "cell_id", "event_time", "event_type"]
    # Jakarta local time in the drop -> UTC in the lake, exactly the canonical events.
    assert staged.sort(["subscriber_key", "event_time"]).equals(events.sort(["subscriber_key", "event_time"]).select(staged.columns))
    assert settings.resolve(drop["raw_path"]).is_file() and not (settings.staging / drop["drop_id"]).exists()
    assert _audit_actions(home) == ["drop_received", "drop_validated", "drop_published"]
    assert list(settings.landing.rglob("*.*")) == []


def test_identical_redrop_is_recorded_as_duplicate_not_processed_twice(home):
    settings = get_settings(home)
    contract = _telkomsel(settings)
    events = canonical_events(contract, WINDOW, 50)
    write_drop(settings.landing, contract, events, window_start=WINDOW, window_end=WINDOW_END)
    _run(home)
    write_drop(settings.landing, contract, events, window_start=WINDOW, window_end=WINDOW_END)
    _run(home)
    original, duplicate = _drops(home)
    assert original["status"] == "accepted"
    assert duplicate["status"] == "duplicate" and duplicate["superseded_by"] == original["drop_id"]
    assert duplicate["sha256"] == original["sha256"]
    assert _audit_actions(home).count("drop_published") == 1 and "drop_duplicate" in _audit_actions(home)
    assert len(list(settings.events_lake.rglob("*.parquet"))) == 1
    assert list(settings.landing.rglob("*.*")) == []


def test_corrected_redrop_supersedes_and_lake_holds_only_new(home):
    settings = get_settings(home)
    contract = _telkomsel(settings)
    write_drop(settings.landing, contract, canonical_events(contract, WINDOW, 50), window_start=WINDOW, window_end=WINDOW_END)
    _run(home)
    corrected = canonical_events(contract, WINDOW, 70, seed=3)
    write_drop(settings.landing, contract, corrected, window_start=WINDOW, window_end=WINDOW_END, delivery=2)
    _run(home)
    first, second = _drops(home)
    assert first["status"] == "superseded" and first["superseded_by"] == second["drop_id"] and first["lake_path"] is None
    assert second["status"] == "accepted" and second["delivery"] == 2
    lake_files = list(settings.events_lake.rglob("*.parquet"))
    assert [path.name for path in lake_files] == [f"{second['drop_id']}.parquet"]
    assert settings.resolve(first["raw_path"]).is_file()  # kept until retention
    assert "drop_superseded" in _audit_actions(home)


def test_late_drop_processed_by_rerun_and_partial_upload_waits(home):
    settings = get_settings(home)
    contract = _telkomsel(settings)
    _run(home)  # the window was computed with nothing in it
    assert _drops(home) == []
    # Partial upload: data file without its manifest is not complete and must wait.
    data_path, manifest_path = write_drop(settings.landing, contract, canonical_events(contract, WINDOW, 40),
                                          window_start=WINDOW, window_end=WINDOW_END, write_manifest=False)
    requests, _cursor, _stats = evaluate_landing(None, home=str(home))
    assert requests == []
    _run(home)
    assert _drops(home) == [] and data_path.exists()
    # The manifest arrives late: the sensor asks for a rerun of that window, which takes it.
    write_drop(settings.landing, contract, canonical_events(contract, WINDOW, 40), window_start=WINDOW, window_end=WINDOW_END)
    requests, _cursor, _stats = evaluate_landing(None, home=str(home))
    assert [(request.job_name, request.partition_key) for request in requests] == [("window_job", PARTITION)]
    _run(home)
    (drop,) = _drops(home)
    assert drop["status"] == "accepted"


def test_cells_drop_published_to_cells_lake(home):
    settings = get_settings(home)
    events_contract = _telkomsel(settings)
    cells_contract = contract_for(settings.contracts_dir, "telkomsel", "cells")
    write_drop(settings.landing, cells_contract, canonical_cells(events_contract), window_start=WINDOW, window_end=WINDOW_END,
               feed="cells", operator="telkomsel")
    requests, _cursor, _stats = evaluate_landing(None, home=str(home))
    assert [(request.job_name, request.partition_key) for request in requests] == [("geography_job", PARTITION)]
    _run(home)
    (drop,) = _drops(home)
    assert drop["status"] == "accepted" and drop["feed"] == "cells"
    cells = pl.read_parquet(settings.resolve(drop["lake_path"]))
    assert settings.resolve(drop["lake_path"]).parent == settings.lake / "cells" / "operator=telkomsel"
    assert cells.columns == ["cell_id", "lon", "lat", "radio"] and cells.height == 20


def test_sixth_operator_added_by_contract_only(home, tmp_path_factory, monkeypatch):
    contracts = tmp_path_factory.mktemp("contracts")
    for path in CONTRACTS_DIR.glob("*.yaml"):
        shutil.copy(path, contracts / path.name)
    document = yaml.safe_load((CONTRACTS_DIR / "indosat_events.yaml").read_text())
    document["id"], document["name"], document["tenant"] = "nusantara-events", "Nusantara subscriber events", "nusantara"
    custom = {item["property"]: item for item in document["customProperties"]}
    custom["operator"]["value"] = "nusantara"
    custom["mnc"]["value"] = ["77"]
    custom["layout"]["value"] = {"format": "csv", "compression": "none", "extension": ".txt", "header": True,
                                 "delimiter": ";", "encoding": "utf-8", "quote": '"'}
    properties = {prop["name"]: prop for prop in document["schema"][0]["properties"]}
    properties["subscriber_key"]["physicalName"] = "pelanggan"
    properties["event_type"]["physicalName"] = "jenis_kejadian"
    properties["event_time"]["physicalName"] = "waktu_lokal"
    properties["event_time"]["logicalTypeOptions"] = {"format": "%d-%m-%Y %H.%M.%S", "timezone": "Asia/Makassar"}  # WITA
    for rule in properties["cell_id"]["quality"]:
        if rule.get("arguments", {}).get("pattern"):
            rule["arguments"]["pattern"] = "^510-(77)-[0-9]{1,6}-[0-9]{1,10}$"
    properties["cell_id"]["logicalTypeOptions"]["pattern"] = "^510-(77)-[0-9]{1,6}-[0-9]{1,10}$"
    # Different composite-cell column names, declared in the contract only.
    properties["cell_id"]["transformSourceObjects"] = ["kode_negara", "kode_operator", "lac", "ci"]
    properties["cell_id"]["transformLogic"] = "{kode_negara}-{kode_operator}-{lac}-{ci}"
    properties["cell_id"].pop("customProperties", None)
    (contracts / "nusantara_events.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setenv("CROWD_CONTRACTS", str(contracts))

    settings = get_settings(home)
    contract = parse_contract(contracts / "nusantara_events.yaml")
    events = canonical_events(contract, WINDOW, 90)
    data_path, _manifest = write_drop(settings.landing, contract, events, window_start=WINDOW, window_end=WINDOW_END)
    header = data_path.read_text().splitlines()[0]
    assert header == "pelanggan;kode_negara;kode_operator;lac;ci;waktu_lokal;jenis_kejadian"
    requests, _cursor, _stats = evaluate_landing(None, home=str(home))
    assert [(request.job_name, request.partition_key) for request in requests] == [("window_job", PARTITION)]
    _run(home)
    (drop,) = _drops(home)
    assert drop["operator"] == "nusantara" and drop["status"] == "accepted", drop["reason"]
    staged = pl.read_parquet(settings.resolve(drop["lake_path"]))
    assert staged.sort(["subscriber_key", "event_time"]).equals(events.sort(["subscriber_key", "event_time"]).select(staged.columns))


def test_blocking_checks_stop_publish_when_staging_is_tampered(home):
    settings = get_settings(home)
    contract = _telkomsel(settings)
    write_drop(settings.landing, contract, canonical_events(contract, WINDOW, 30), window_start=WINDOW, window_end=WINDOW_END)
    resources = {"crowd": CrowdPlatform(home=str(home))}
    with dg.instance_for_test() as instance:
        assert dg.materialize([operator_drops], resources=resources, instance=instance, partition_key=PARTITION).success
        (drop,) = _drops(home)
        staging = settings.staging / drop["drop_id"] / "events.parquet"
        # A must-never-happen: a phone number in a staged file, and raw bytes changed after audit.
        pl.read_parquet(staging).with_columns(pl.lit("+6281234567890").alias("subscriber_key")).write_parquet(staging)
        with open(settings.resolve(drop["raw_path"]), "ab") as handle:
            handle.write(b"tampered")
        result = dg.materialize([operator_drops, staged_events], resources=resources, instance=instance,
                                partition_key=PARTITION, raise_on_error=False)
        checks = {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}
        assert not checks["no_raw_msisdn"].passed and checks["no_raw_msisdn"].severity == dg.AssetCheckSeverity.ERROR
        assert not checks["contract_rules"].passed and checks["contract_rules"].severity == dg.AssetCheckSeverity.ERROR
        materialized = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
        assert "staged_events" not in materialized
    (drop,) = _drops(home)
    assert drop["status"] == "received" and drop["lake_path"] is None
    assert list(settings.events_lake.rglob("*.parquet")) == []


def test_utf8_bom_is_tolerated(home):
    """Decision (docs/ingestion.md): a UTF-8 BOM carries no data; the drop is accepted."""
    import hashlib
    import json

    settings = get_settings(home)
    contract = contract_for(settings.contracts_dir, "indosat", "events")
    data_path, manifest_path = write_drop(settings.landing, contract, canonical_events(contract, WINDOW, 25),
                                          window_start=WINDOW, window_end=WINDOW_END)
    payload = b"\xef\xbb\xbf" + data_path.read_bytes()
    data_path.write_bytes(payload)
    manifest = json.loads(manifest_path.read_text())
    manifest.update(sha256=hashlib.sha256(payload).hexdigest(), bytes=len(payload))
    manifest_path.write_text(json.dumps(manifest))
    _run(home)
    (drop,) = _drops(home)
    assert drop["status"] == "accepted", drop["reason"]
    assert pl.read_parquet(settings.resolve(drop["lake_path"])).height == 25


def _interrupted_query_error() -> RuntimeError:
    """What DuckDB raises when a stop signal arrives mid-query, with a handler like Dagster's (raises)."""
    import os
    import signal
    import threading

    class Stop(BaseException):
        pass

    def handler(signum, frame):
        raise Stop()

    previous = signal.signal(signal.SIGTERM, handler)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        # One thread: with worker threads DuckDB 2.0.1 often deadlocks in Executor::CancelTasks after
        # a signal interrupt (9 of 12 tries hung; docs/decisions/009-stop-signals.md).
        with duckdb.connect(config={"threads": 1}) as con:
            con.execute("SELECT count(*) FROM range(1000000000000) t(i) WHERE hash(i) % 7 = 3").fetchall()
    except (RuntimeError, duckdb.Error) as error:  # the handler's Stop is lost inside DuckDB
        return error
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    raise AssertionError("the query was not interrupted")


def test_duckdb_reports_a_stop_signal_as_an_interrupt_not_as_a_bad_drop():
    from crowd_platform.ingestion.interrupts import is_interrupt

    error = _interrupted_query_error()
    assert is_interrupt(error)
    with duckdb.connect() as con, pytest.raises(duckdb.Error) as bad_sql:
        con.execute("SELECT CAST('x' AS INTEGER)")
    assert not is_interrupt(bad_sql.value) and not is_interrupt(RuntimeError("something else"))
    assert is_interrupt(duckdb.InterruptException("INTERRUPT Error: Interrupted!"))


@pytest.mark.parametrize("step", ["stage_drop", "validate_staged"])
def test_stop_signal_during_validation_leaves_the_drop_to_recovery(home, monkeypatch, step):
    """SIGTERM mid-parse or mid-validation is a crash, not a verdict: no quarantine; recovery re-lands it and it is accepted."""
    from crowd_platform.ingestion import ingest
    from crowd_platform.runner.recovery import reland_interrupted_drops

    settings = get_settings(home)
    contract = _telkomsel(settings)
    write_drop(settings.landing, contract, canonical_events(contract, WINDOW, 150), window_start=WINDOW, window_end=WINDOW_END)
    interrupt = _interrupted_query_error()

    def validation_interrupted(*args, **kwargs):
        raise interrupt

    with monkeypatch.context() as patch:
        patch.setattr(ingest, step, validation_interrupted)
        with dg.instance_for_test() as instance:
            with pytest.raises(KeyboardInterrupt):
                dg.materialize([operator_drops, staged_events], resources={"crowd": CrowdPlatform(home=str(home))},
                               instance=instance, partition_key=PARTITION)
    (drop,) = _drops(home)
    assert drop["status"] == "received" and drop["reason"] is None and drop["quarantine_path"] is None
    assert "drop_quarantined" not in _audit_actions(home)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        assert reland_interrupted_drops(settings, con, active_run_ids=set()) == [drop["drop_id"]]
    _run(home)
    (drop,) = _drops(home)
    assert drop["status"] == "accepted" and drop["rows_loaded"] == 150
