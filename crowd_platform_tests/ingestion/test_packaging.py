"""`crowd-platform package`: an operator's export cut into the drops the platform accepts.

Uses the FlowKit deployment's contracts (deployments/nepal_flowkit/data_contracts): naive local
times in Asia/Kathmandu (UTC+05:45), a versioned cell table. End to end: test_flowkit_onboarding.py.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from crowd_platform.cli import main
from crowd_platform.common.contracts import contract_for
from crowd_platform.common.settings import PROJECT_ROOT
from crowd_platform.ingestion.packaging import PackagingError, package_cells, package_events

CONTRACTS = PROJECT_ROOT / "deployments" / "nepal_flowkit" / "data_contracts"
HEADER = "start_time,msisdn_counterpart,id,msisdn,location_id,outgoing,duration,tac"
KEY = "a" * 64


def _row(local_time: str, cell: str = "JxDglNVk", key: str = KEY) -> str:
    return f"{local_time},{'b' * 64},call-1,{key},{cell},True,12.0,1234.0"


def _export(tmp_path: Path, rows: list[str], name: str = "calls.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_an_export_becomes_one_drop_per_utc_window_with_its_manifest(tmp_path):
    contract = contract_for(CONTRACTS, "flowkit", "calls")
    # 00:05 and 00:14 local (18:20 and 18:29 UTC the day before) share a window; 00:15 starts the next;
    # 05:44 local is 23:59 UTC.
    export = _export(tmp_path, [_row("2016-01-01 00:05:00"), _row("2016-01-01 00:15:00", "AUQZGMW3"),
                                _row("2016-01-01 00:14:59", "ns6vzdkC"), _row("2016-01-01 05:44:00")])
    drops = package_events(export, contract, tmp_path / "landing", key_id="flowkit-20160101")
    assert [(drop.window_start, drop.rows) for drop in drops] == [
        (datetime(2015, 12, 31, 18, 15, tzinfo=timezone.utc), 2),
        (datetime(2015, 12, 31, 18, 30, tzinfo=timezone.utc), 1),
        (datetime(2015, 12, 31, 23, 45, tzinfo=timezone.utc), 1),
    ]
    first = drops[0]
    assert first.data_path.parent == tmp_path / "landing" / "flowkit"
    manifest = json.loads(first.manifest_path.read_text())
    payload = first.data_path.read_bytes()
    assert manifest["sha256"] == hashlib.sha256(payload).hexdigest() and manifest["bytes"] == len(payload)
    assert manifest["row_count"] == 2 and manifest["feed"] == "calls" and manifest["contract_version"] == "1.0.0"
    assert manifest["window_start"] == "2015-12-31T18:15:00Z" and manifest["window_end"] == "2015-12-31T18:30:00Z"
    assert manifest["pseudonymization"] == {"scheme": "hmac-sha256", "key_id": "flowkit-20160101"}
    lines = payload.decode().splitlines()
    # The export's own columns and spelling, rows in export order.
    assert lines[0] == HEADER and lines[1].startswith("2016-01-01 00:05:00,") and lines[2].startswith("2016-01-01 00:14:59,")


def test_a_time_that_does_not_parse_stops_with_row_numbers_and_writes_nothing(tmp_path):
    contract = contract_for(CONTRACTS, "flowkit", "calls")
    export = _export(tmp_path, [_row("2016-01-01 00:05:00"), _row("2016-01-01 00:06:00"), _row("01/01/2016 00:07"),
                                _row("")])
    with pytest.raises(PackagingError) as caught:
        package_events(export, contract, tmp_path / "landing", key_id="flowkit-20160101")
    assert str(caught.value) == ("2 row(s) have a start_time time that does not parse with the contract's format "
                                 "(data rows 3, 4)")
    assert not (tmp_path / "landing").exists()


def test_a_wrong_header_is_the_same_one_line_reason_ingestion_gives(tmp_path):
    contract = contract_for(CONTRACTS, "flowkit", "calls")
    export = tmp_path / "calls.csv"
    export.write_text(HEADER.replace(",tac", "") + "\n" + _row("2016-01-01 00:05:00").rsplit(",", 1)[0] + "\n")
    with pytest.raises(PackagingError, match=r"^calls.csv: missing columns: tac$"):
        package_events(export, contract, tmp_path / "landing", key_id="flowkit-20160101")


def test_a_versioned_cell_table_becomes_one_full_list_per_validity_date(tmp_path):
    contract = contract_for(CONTRACTS, "flowkit", "cells")
    export = tmp_path / "cells.csv"
    export.write_text(
        "id,site_id,version,longitude,latitude,date_of_first_service,date_of_last_service\n"
        "AAAAAAAA,s1,0,27.7,85.3,2016-01-01,2016-01-05\n"   # moved on the 6th
        "AAAAAAAA,s1,1,27.8,85.4,2016-01-06,\n"
        "BBBBBBBB,s2,0,28.2,83.9,2016-01-01,\n"
        "CCCCCCCC,s3,0,26.7,87.2,2016-01-01,2016-01-03\n"   # retired after the 3rd
        "DDDDDDDD,s4,0,27.1,84.1,2016-01-04,\n")            # new on the 4th
    drops = package_cells(export, contract, tmp_path / "landing", valid_from_column="date_of_first_service",
                          valid_to_column="date_of_last_service", local_timezone="Asia/Kathmandu")

    def cells(drop) -> list[str]:
        return sorted(line.split(",")[0] + "/" + line.split(",")[2] for line in drop.data_path.read_text().splitlines()[1:])

    # Local midnight in Kathmandu is 18:15 UTC the day before.
    assert [drop.window_start.isoformat() for drop in drops] == [
        "2015-12-31T18:15:00+00:00", "2016-01-03T18:15:00+00:00", "2016-01-05T18:15:00+00:00"]
    assert [cells(drop) for drop in drops] == [
        ["AAAAAAAA/0", "BBBBBBBB/0", "CCCCCCCC/0"],
        ["AAAAAAAA/0", "BBBBBBBB/0", "DDDDDDDD/0"],
        ["AAAAAAAA/1", "BBBBBBBB/0", "DDDDDDDD/0"],
    ]


def test_cli_refuses_an_event_feed_without_a_key_id(tmp_path, capsys):
    export = _export(tmp_path, [_row("2016-01-01 00:05:00")])
    code = main(["package", "--operator", "flowkit", "--feed", "calls", "--input", str(export),
                 "--landing", str(tmp_path / "landing"), "--contracts", str(CONTRACTS)])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--key-id" in error
    assert main(["package", "--operator", "nobody", "--feed", "calls", "--input", str(export),
                 "--landing", str(tmp_path / "landing"), "--contracts", str(CONTRACTS)]) == 2
