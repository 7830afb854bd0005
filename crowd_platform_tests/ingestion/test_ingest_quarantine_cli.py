"""`crowd-platform quarantine`: list, show, release after a contract fix (through Dagster), reject."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import yaml

from crowd_platform.cli import main
from crowd_platform.ingestion.assets import operator_drops, staged_events
from crowd_platform.common.contracts import parse_contract
from crowd_platform.ingestion.fixtures import canonical_events
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import CONTRACTS_DIR, get_settings
from crowd_platform.simulator.drops import write_drop

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)


def test_release_after_contract_fix_and_reject(tmp_path, monkeypatch, capsys):
    home, contracts = tmp_path / "home", tmp_path / "contracts"
    contracts.mkdir()
    for path in CONTRACTS_DIR.glob("*.yaml"):
        shutil.copy(path, contracts / path.name)
    monkeypatch.setenv("CROWD_HOME", str(home))
    monkeypatch.setenv("CROWD_CONTRACTS", str(contracts))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    settings = get_settings()
    settings.ensure_dirs()
    contract_path = contracts / "indosat_events.yaml"
    original = contract_path.read_text()
    # A contract bug: the operator's 'LU' code was left out of the valid event types.
    document = yaml.safe_load(original)
    event_type = next(prop for prop in document["schema"][0]["properties"] if prop["name"] == "event_type")
    event_type["quality"][0]["arguments"]["validValues"].remove("LU")
    contract_path.write_text(yaml.safe_dump(document, sort_keys=False))

    contract = parse_contract(contract_path)
    write_drop(settings.landing, contract, canonical_events(contract, WINDOW, 40), window_start=WINDOW, window_end=WINDOW + timedelta(minutes=15))
    write_drop(settings.landing, contract, canonical_events(contract, WINDOW, 40, seed=5), window_start=WINDOW,
               window_end=WINDOW + timedelta(minutes=15), delivery=2)
    with dg.instance_for_test() as instance:
        assert dg.materialize([operator_drops, staged_events], resources={"crowd": CrowdPlatform(home=str(home))},
                              instance=instance, partition_key="2020-03-31-01:00").success
    capsys.readouterr()

    assert main(["quarantine", "list"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert listed[-1] == "2 drop(s)" and all("event_type_valid" in line for line in listed[:-1])
    first, second = sorted(line.split("\t")[0] for line in listed[:-1])

    assert main(["quarantine", "show", first]) == 0
    shown = capsys.readouterr().out
    assert "FAIL  event_type_valid [duckdb]" in shown and "rows [" in shown

    contract_path.write_text(original)  # the fix
    assert main(["quarantine", "release", first]) == 0
    assert f"{first}: accepted" in capsys.readouterr().out
    assert main(["quarantine", "reject", second, "--reason", "superseded by operator resend"]) == 0
    assert main(["quarantine", "reject", "no_such_drop", "--reason", "x"]) == 2
    assert main(["quarantine", "release", second]) == 2  # rejected is final

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        statuses = dict(con.execute("SELECT drop_id, status FROM drops").fetchall())
        actions = [row[0] for row in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()]
        lake_path = con.execute("SELECT lake_path FROM drops WHERE drop_id = ?", [first]).fetchone()[0]
    assert statuses == {first: "accepted", second: "rejected"}
    assert settings.resolve(lake_path).is_file()
    assert "drop_released" in actions and "drop_rejected" in actions and actions.count("drop_published") == 1
    assert list(settings.landing.rglob("*.*")) == []
