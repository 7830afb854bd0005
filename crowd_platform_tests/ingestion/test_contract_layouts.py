"""Richer contract layouts (issue 15 part 3): header columns matched by name, columns read but
never stored, constants, booleans, dates and times with an offset, and lint's one-line reasons.

Contracts are copies of data_contracts/ changed in tmp_path; drops go through the real
pipeline (landing -> Dagster operator_drops + staged_events -> lake) where the behaviour is
end to end, and through ``stage_drop`` alone where only the parse is in question.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from crowd_platform.common.contracts import parse_contract
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import CONTRACTS_DIR, get_settings
from crowd_platform.ingestion.assets import operator_drops, staged_events
from crowd_platform.ingestion.fixtures import canonical_events
from crowd_platform.ingestion.layout import ParseError, physical_columns, stage_drop
from crowd_platform.ingestion.lint import lint_contract
from crowd_platform.simulator.drops import (MANIFEST_SUFFIX, build_manifest, drop_file_name, encode_drop,
                                            to_operator_layout, write_drop)

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)
WINDOW_END = WINDOW + timedelta(minutes=15)
PARTITION = "2020-03-31-01:00"
CANONICAL = ["subscriber_key", "cell_id", "event_time", "event_type"]
# The counterpart's identifier in every row: one value, so a Parquet dictionary or any copy
# would hold it verbatim and the byte scan below would find it.
COUNTERPART = "cpty-7f3a9c2e5b1d48e6"


# --- helpers -------------------------------------------------------------------------------

def _document(operator: str) -> dict:
    return yaml.safe_load((CONTRACTS_DIR / f"{operator}_events.yaml").read_text(encoding="utf-8"))


def _properties(document: dict) -> dict[str, dict]:
    return {prop["name"]: prop for prop in document["schema"][0]["properties"]}


def _custom(prop: dict, **values) -> None:
    """Set column-level customProperties (replacing any of the same name)."""
    items = [item for item in prop.get("customProperties") or [] if item["property"] not in values]
    prop["customProperties"] = items + [{"property": key, "value": value} for key, value in values.items()]


def _contracts_dir(tmp_path: Path, operator: str, document: dict) -> Path:
    """A copy of data_contracts/ with the operator's events contract replaced."""
    contracts = tmp_path / "contracts"
    contracts.mkdir(exist_ok=True)
    for path in CONTRACTS_DIR.glob("*.yaml"):
        shutil.copy(path, contracts / path.name)
    (contracts / f"{operator}_events.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return contracts


def _run(home: Path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize([operator_drops, staged_events], resources={"crowd": CrowdPlatform(home=str(home))},
                                instance=instance, partition_key=PARTITION)
        assert result.success


def _only_drop(home: Path) -> dict:
    with duckdb.connect(str(get_settings(home).warehouse_path), read_only=True) as con:
        cursor = con.execute("SELECT * FROM drops")
        names = [column[0] for column in cursor.description]
        (row,) = cursor.fetchall()
    return dict(zip(names, row))


def _land(settings, contract, frame: pl.DataFrame) -> Path:
    """A hand-made drop (data file, then manifest) in the contract's layout."""
    payload = encode_drop(frame, contract)
    name = drop_file_name(contract.operator, "events", WINDOW, 1, contract)
    path = settings.landing / contract.operator / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    manifest = build_manifest(contract=contract, operator=contract.operator, feed="events", file_name=name, payload=payload,
                              row_count=frame.height, window_start=WINDOW, window_end=WINDOW_END, delivery=1,
                              key_id="k-20200331", created_at=WINDOW_END)
    path.with_name(name + MANIFEST_SUFFIX).write_text(json.dumps(manifest))
    return path


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(["subscriber_key", "event_time"])


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    get_settings(home).ensure_dirs()
    return home


# --- 1. header columns by name ---------------------------------------------------------------

def test_header_columns_match_by_name_in_any_order(home):
    settings = get_settings(home)
    contract = parse_contract(CONTRACTS_DIR / "telkomsel_events.yaml")  # ';'-delimited, gzip
    events = canonical_events(contract, WINDOW, 90)
    frame = to_operator_layout(events, contract)
    _land(settings, contract, frame.select(list(reversed(frame.columns))))
    _run(home)
    drop = _only_drop(home)
    assert drop["status"] == "accepted", drop["reason"]
    lake = pl.read_parquet(settings.resolve(drop["lake_path"]))
    assert lake.columns == CANONICAL
    assert _sorted(lake).equals(_sorted(events).select(CANONICAL))


def _stage(tmp_path: Path, contract, payload: bytes, name: str = "drop.csv") -> pl.DataFrame:
    source = tmp_path / name
    source.write_bytes(payload)
    with duckdb.connect() as connection:
        staged = stage_drop(connection, source, contract, tmp_path / "staged" / f"{name}.parquet")
    return pl.read_parquet(staged.path)


def test_header_order_free_but_missing_extra_and_duplicate_columns_refused(tmp_path):
    contract = parse_contract(CONTRACTS_DIR / "indosat_events.yaml")
    header = physical_columns(contract)  # sub_id, mcc, mnc, lac, ci, timestamp_utc, type
    row = ["a" * 64, "510", "01", "1", "2", "2020-03-31T01:00:00Z", "SMS"]
    staged = _stage(tmp_path, contract, (",".join(reversed(header)) + "\n" + ",".join(reversed(row)) + "\n").encode())
    assert staged.columns == CANONICAL and staged.row(0)[1] == "510-01-1-2" and staged.row(0)[3] == "sms"
    cases = {
        "missing columns: type": (header[:-1], row[:-1]),
        "unexpected columns: note": (header + ["note"], row + ["x"]),
        "duplicate columns: mcc": (header + ["mcc"], row + ["510"]),
    }
    for reason, (names, values) in cases.items():
        with pytest.raises(ParseError) as caught:
            _stage(tmp_path, contract, (",".join(names) + "\n" + ",".join(values) + "\n").encode())
        assert str(caught.value) == reason


def test_headerless_file_matches_by_position(tmp_path):
    document = _document("indosat")
    _custom_layout(document, header=False)
    path = tmp_path / "indosat_events.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    contract = parse_contract(path)
    row = ["a" * 64, "510", "01", "1", "2", "2020-03-31T01:00:00Z", "SMS"]
    staged = _stage(tmp_path, contract, (",".join(row) + "\n").encode())
    assert staged.row(0) == ("a" * 64, "510-01-1-2", WINDOW, "sms")
    with pytest.raises(ParseError, match="wrong number of fields"):
        _stage(tmp_path, contract, (",".join(row[:-1]) + "\n").encode(), "short.csv")


def _custom_layout(document: dict, **changes) -> None:
    for item in document["customProperties"]:
        if item["property"] == "layout":
            item["value"].update(changes)


# --- 2 + 3. read-but-not-stored columns, constants, times with an offset -----------------------

def _sms_feed_with_counterpart() -> dict:
    """Indosat's contract as an SMS-only CDR feed: event_type is the constant sms, the
    counterpart's identifier is read but never stored, times carry an offset (+07:00)."""
    document = _document("indosat")
    properties = _properties(document)
    event_type = properties["event_type"]
    event_type.pop("physicalName")
    event_type["customProperties"] = [{"property": "constant", "value": "sms"}]
    event_type["quality"][0]["arguments"]["validValues"] = ["sms"]
    event_time = properties["event_time"]
    event_time["logicalTypeOptions"] = {"format": "%Y-%m-%dT%H:%M:%S%z", "timezone": True, "defaultTimezone": "Asia/Jakarta"}
    document["schema"][0]["properties"].insert(1, {
        "name": "counterpart", "physicalName": "msisdn_counterpart", "logicalType": "string", "classification": "restricted",
        "description": "The other party. Read (the file carries it) but never stored.",
        "customProperties": [{"property": "store", "value": False}]})
    return document


def test_unstored_column_and_constant_never_reach_the_lake(home, tmp_path, monkeypatch):
    document = _sms_feed_with_counterpart()
    contracts = _contracts_dir(tmp_path, "indosat", document)
    monkeypatch.setenv("CROWD_CONTRACTS", str(contracts))
    assert lint_contract(contracts / "indosat_events.yaml") == []
    settings = get_settings(home)
    contract = parse_contract(contracts / "indosat_events.yaml")
    events = canonical_events(contract, WINDOW, 120).with_columns(pl.lit("sms").alias("event_type"))
    frame = to_operator_layout(events.with_columns(pl.lit(COUNTERPART).alias("counterpart")), contract)
    assert "type" not in frame.columns and frame["msisdn_counterpart"].unique().to_list() == [COUNTERPART]
    local = events["event_time"].dt.convert_time_zone("Asia/Jakarta").dt.strftime("%Y-%m-%dT%H:%M:%S") + "+07:00"
    raw = _land(settings, contract, frame.with_columns(local.alias("timestamp_utc")))
    raw_bytes = raw.read_bytes()
    _run(home)
    drop = _only_drop(home)
    assert drop["status"] == "accepted", drop["reason"]
    lake = pl.read_parquet(settings.resolve(drop["lake_path"]))
    assert lake.columns == CANONICAL
    assert _sorted(lake).equals(_sorted(events).select(CANONICAL))
    _assert_nowhere_but_raw(home, settings.resolve(drop["raw_path"]), raw_bytes)


def _assert_nowhere_but_raw(home: Path, raw_archive: Path, raw_bytes: bytes) -> None:
    """The counterpart value is in no file under CROWD_HOME but the archived drop as delivered
    (byte scan of every file, the warehouse included; Parquet files also decoded, in case
    compression hid the bytes)."""
    marker = COUNTERPART.encode()
    holders = [path.resolve() for path in home.rglob("*") if path.is_file() and marker in path.read_bytes()]
    # raw/ keeps the drop exactly as delivered (sha256 of the manifest), for its retention period only.
    assert holders == [raw_archive.resolve()] and raw_archive.read_bytes() == raw_bytes
    for parquet in home.rglob("*.parquet"):
        frame = pl.read_parquet(parquet)
        assert "counterpart" not in frame.columns and "msisdn_counterpart" not in frame.columns
        text = frame.select(pl.all().cast(pl.Utf8))
        assert not any(text[column].str.contains(COUNTERPART, literal=True).any() for column in text.columns), parquet


def test_unstored_column_can_feed_a_transform(tmp_path):
    """A store: false column is read: a transform may use it, by its property name."""
    document = _document("indosat")
    properties = _properties(document)
    properties["cell_id"]["transformLogic"] = "{mcc}-{mnc}-{lac}-{ci}"
    properties["cell_id"]["customProperties"] = [{"property": "source_columns", "value": {"mcc": "mcc", "mnc": "mnc", "ci": "ci"}}]
    document["schema"][0]["properties"].append({"name": "lac", "physicalName": "location_area", "logicalType": "string",
                                                "customProperties": [{"property": "store", "value": False}]})
    path = tmp_path / "indosat_events.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert lint_contract(path) == []
    contract = parse_contract(path)
    assert physical_columns(contract) == ["sub_id", "mcc", "mnc", "location_area", "ci", "timestamp_utc", "type"]
    text = "sub_id,mcc,mnc,location_area,ci,timestamp_utc,type\n" + "a" * 64 + ",510,01,77,2,2020-03-31T01:00:00Z,DATA\n"
    staged = _stage(tmp_path, contract, text.encode())
    assert staged.columns == CANONICAL and staged.row(0)[1] == "510-01-77-2"


# --- 4. booleans, dates, local times -----------------------------------------------------------

def _feed_with_flags() -> dict:
    """Tri's contract (tab-delimited) with a stored boolean and date, times in local WITA time."""
    document = _document("tri")
    properties = _properties(document)
    properties["event_time"]["logicalTypeOptions"] = {"format": "%d.%m.%Y %H:%M", "defaultTimezone": "Asia/Makassar"}
    document["schema"][0]["properties"] += [
        {"name": "outgoing", "physicalName": "arah", "logicalType": "boolean",
         "customProperties": [{"property": "true_values", "value": ["1", "Y", "keluar"]},
                              {"property": "false_values", "value": ["0", "N", "masuk"]}]},
        {"name": "billing_date", "physicalName": "tgl", "logicalType": "date", "logicalTypeOptions": {"format": "%d/%m/%Y"}},
    ]
    return document


def test_boolean_date_and_local_time_columns(home, tmp_path, monkeypatch):
    contracts = _contracts_dir(tmp_path, "tri", _feed_with_flags())
    monkeypatch.setenv("CROWD_CONTRACTS", str(contracts))
    assert lint_contract(contracts / "tri_events.yaml") == []
    settings = get_settings(home)
    contract = parse_contract(contracts / "tri_events.yaml")
    events = canonical_events(contract, WINDOW, 60).with_columns(  # whole minutes: the format has no seconds
        (pl.lit(WINDOW) + pl.duration(minutes=pl.int_range(pl.len()) % 15)).dt.cast_time_unit("us").alias("event_time"),
        (pl.int_range(pl.len()) % 3 == 0).alias("outgoing"), pl.lit(datetime(2020, 3, 31).date()).alias("billing_date"))
    assert events.select(CANONICAL).n_unique() == events.height
    data_path, _ = write_drop(settings.landing, contract, events, window_start=WINDOW, window_end=WINDOW_END)
    assert data_path.read_text().splitlines()[1].split("\t")[-2:] == ["1", "31/03/2020"]
    _run(home)
    drop = _only_drop(home)
    assert drop["status"] == "accepted", drop["reason"]
    lake = pl.read_parquet(settings.resolve(drop["lake_path"]))
    assert lake.columns == CANONICAL + ["outgoing", "billing_date"]
    assert lake.schema["outgoing"] == pl.Boolean and lake.schema["billing_date"] == pl.Date
    assert _sorted(lake).equals(_sorted(events).select(lake.columns))


def test_boolean_spellings_any_case_and_unknown_is_null(tmp_path):
    path = tmp_path / "tri_events.yaml"
    path.write_text(yaml.safe_dump(_feed_with_flags(), sort_keys=False))
    contract = parse_contract(path)
    lines = ["\t".join(physical_columns(contract))]
    for flag in ("Y", " n ", "KELUAR", "1", "0", "maybe", ""):
        lines.append("\t".join(["a" * 64, "510-89-1-2", "31.03.2020 08:05", "sms", flag, "2020-03-31"]))
    staged = _stage(tmp_path, contract, ("\n".join(lines) + "\n").encode())
    assert staged["outgoing"].to_list() == [True, False, True, True, False, None, None]
    assert staged["billing_date"].to_list() == [None] * 7  # not the declared %d/%m/%Y: a counted null, not a crash
    assert staged["event_time"][0] == datetime(2020, 3, 31, 0, 5, tzinfo=timezone.utc)  # WITA is UTC+8


# --- 5. lint -------------------------------------------------------------------------------------

def _lint(tmp_path: Path, document: dict) -> list[str]:
    path = tmp_path / "indosat_events.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return lint_contract(path)


def test_lint_explains_each_layout_problem_in_one_line(tmp_path):
    document = _sms_feed_with_counterpart()
    properties = _properties(document)
    properties["event_type"]["physicalName"] = "type"                       # constant and physical name
    properties["counterpart"]["quality"] = [{"name": "cp_not_null", "metric": "nullValues", "mustBe": 0}]
    properties["subscriber_key"]["customProperties"] = [{"property": "store", "value": False}]
    document["schema"][0]["properties"] += [
        {"name": "outgoing", "physicalName": "dir", "logicalType": "boolean"},
        {"name": "answered", "physicalName": "ans", "logicalType": "boolean",
         "customProperties": [{"property": "true_values", "value": [True]}, {"property": "false_values", "value": ["no"]}]},
        {"name": "billing_date", "physicalName": "tgl", "logicalType": "date", "logicalTypeOptions": {"format": "yyyy-MM-dd"}},
        {"name": "kept", "physicalName": "k", "customProperties": [{"property": "store", "value": "no"}]},
    ]
    problems = _lint(tmp_path, document)
    expected = {
        "column event_type: a constant is not read from the file": 1,
        "column counterpart: store: false column has quality rules": 1,
        "column subscriber_key: store: false on a canonical or required column": 1,
        "column subscriber_key: store: false column has quality rules": 1,
        "column subscriber_key: store: false column is used by table rule no_duplicate_events": 1,
        "column outgoing: boolean column needs customProperties true_values and false_values": 1,
        "column answered: a true_values / false_values spelling is a YAML boolean": 1,
        "column billing_date: format 'yyyy-MM-dd' has no strftime code": 1,
        "column kept: store must be true or false": 1,
    }
    for fragment in expected:
        assert sum(fragment in problem for problem in problems) == 1, (fragment, problems)
    assert all("\n" not in problem and problem.startswith("indosat_events.yaml: ") for problem in problems)
    assert len(problems) == len(expected), problems


def test_lint_flags_an_unstored_column_used_by_a_table_rule_and_a_missing_date_format(tmp_path):
    document = _sms_feed_with_counterpart()
    duplicates = next(rule for rule in document["schema"][0]["quality"] if rule.get("metric") == "duplicateValues")
    duplicates["arguments"]["properties"].append("counterpart")
    document["schema"][0]["properties"].append({"name": "billing_date", "physicalName": "tgl", "logicalType": "date"})
    problems = _lint(tmp_path, document)
    assert any("column counterpart: store: false column is used by table rule no_duplicate_events" in p for p in problems), problems
    assert any("column billing_date: date column needs logicalTypeOptions format" in p for p in problems), problems


def test_repository_contracts_lint_clean():
    for path in sorted(CONTRACTS_DIR.glob("*.yaml")):
        assert lint_contract(path) == [], path.name
