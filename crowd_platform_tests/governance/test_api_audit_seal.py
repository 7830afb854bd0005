"""API access records sealed into the audit chain (governance/api_audit.py): real files written by
the API's own writer (AccessLog), a real DuckDB warehouse, the real `audit verify`, retention and
the Dagster `audit_log` asset. A seal names a closed file's bytes, sha256, lines and request
times; a later edit, truncation or deletion fails verification with one line naming the file;
retention deletes sealed files past the contract's period with a certificate, never others; no
line's content (token name, parameters) leaves the files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import yaml

from crowd_platform.api.access_log import AccessLog, audit_dir
from crowd_platform.cli import main
from crowd_platform.common import audit
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import CONTRACTS_DIR
from crowd_platform.common.warehouse import connect, fetch_dicts
from crowd_platform.governance.api_audit import SEAL_ACTION, seal_closed_files
from crowd_platform.governance.assets import audit_log_checkpoint
from crowd_platform.governance.audit_chain import VerifyResult, verify_chain, write_checkpoint
from crowd_platform.governance.retention import apply_retention, load_policy
from crowd_platform.governance.retention.plan import plan_api_audit

WHO = "ops-team-SECRETNAME-7f3a"         # a token name: must never leave the files
PARAM = "PARAM-MARKER-91c2e"              # a request parameter value: same
MALFORMED = "GARBLED-LINE-MARKER-44d1"   # the text of a malformed line: same
TODAY = datetime.now(timezone.utc).date()
NOON = datetime.combine(TODAY, time(12), tzinfo=timezone.utc)


@pytest.fixture()
def settings(witnessed_home):
    settings = witnessed_home
    with connect(settings.warehouse_path) as con:  # some history before the API's files
        audit.append(con, "drop.accepted", purpose="test", actor="tester", object_kind="drop", object_id="drop-1")
    return settings


def _requests(settings, day: date, count: int) -> Path:
    """``count`` requests at minutes 1..count of ``day``, through the API server's own writer."""
    log = AccessLog(settings.home, flush_interval_s=0.05)
    for number in range(1, count + 1):
        at = datetime.combine(day, time(8, number), tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        log.record({"at": at, "who": WHO, "token_id": "b348f3ff0678", "method": "GET", "route": "/density",
                    "dataset": "district_density_published", "params": {"level": "kecamatan", "window": PARAM},
                    "status": 200, "ms": 1.5})
    log.close()
    [path] = audit_dir(settings.home).glob(f"{day.isoformat()}.*.jsonl")
    return path


def _seal(settings, now=NOON):
    with connect(settings.warehouse_path) as con:
        return seal_closed_files(con, settings.home, purpose="test", actor="tester", now=now)


def _seal_records(settings) -> list[dict]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return fetch_dicts(con, "SELECT seq, object_kind, object_id, details FROM audit_log WHERE action = ? ORDER BY seq",
                           [SEAL_ACTION])


def _verify(settings) -> VerifyResult:
    with connect(settings.warehouse_path, read_only=True) as con:
        return verify_chain(con, settings.witness, home=settings.home)


def _cli_verify(capsys) -> tuple[int, list[str]]:
    code = main(["audit", "verify"])
    return code, capsys.readouterr().out.splitlines()


def test_seals_closed_files_only(settings):
    old, yesterday, today = (_requests(settings, TODAY - timedelta(days=2), 3), _requests(settings, TODAY - timedelta(days=1), 2),
                             _requests(settings, TODAY, 4))
    outcome = _seal(settings)
    assert outcome.summary() == {"sealed": 2, "already_sealed": 0, "open": 1, "unreadable": 0, "malformed_lines": 0,
                                 "other_entries": 0}
    records = _seal_records(settings)
    assert [r["object_id"] for r in records] == [f"api_audit/{old.name}", f"api_audit/{yesterday.name}"]
    assert {r["object_kind"] for r in records} == {"api_audit"}
    details = json.loads(records[0]["details"])
    data = old.read_bytes()
    day = (TODAY - timedelta(days=2)).isoformat()
    assert details == {"file": f"api_audit/{old.name}", "day": day, "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest(), "lines": 3, "malformed_lines": 0,
                       "first_at": f"{day}T08:01:00.000000Z", "last_at": f"{day}T08:03:00.000000Z"}
    assert today.name not in json.dumps(records), "today's file is still being written"
    result = _verify(settings)
    assert result.ok and result.sealed_files == 2, result.summary()
    assert ", 2 sealed API audit file(s) intact" in result.summary()


def test_a_day_is_closed_only_after_the_grace_past_midnight(settings):
    _requests(settings, TODAY - timedelta(days=1), 2)
    midnight = datetime.combine(TODAY, time(0), tzinfo=timezone.utc)
    assert _seal(settings, now=midnight + timedelta(minutes=1)).summary()["sealed"] == 0
    assert _seal(settings, now=midnight + timedelta(minutes=10)).summary()["sealed"] == 1


def test_sealing_is_idempotent(settings):
    _requests(settings, TODAY - timedelta(days=3), 2)
    _requests(settings, TODAY - timedelta(days=1), 2)
    assert _seal(settings).summary()["sealed"] == 2
    with connect(settings.warehouse_path, read_only=True) as con:
        records = con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    again = _seal(settings)
    assert again.summary()["sealed"] == 0 and again.already_sealed == 2
    with connect(settings.warehouse_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM audit_log").fetchone()[0] == records
    assert len(_seal_records(settings)) == 2


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[data.index(b'"status":200') + 9] = ord("4")   # 200 -> 400, same size
    path.write_bytes(bytes(data))


def _drop_a_line(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:1] + lines[2:]))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize("tamper, words", [
    (_flip_one_byte, "changed after its seal: sealed {size} bytes / 3 lines, now {size} bytes / 3 lines, sha256 differs"),
    (_drop_a_line, "changed after its seal: sealed {size} bytes / 3 lines, now "),
    (_truncate, "changed after its seal: sealed {size} bytes / 3 lines, now 40 bytes / 1 lines"),
    (Path.unlink, "is missing (no deletion record follows its seal)"),
], ids=["edit-one-byte", "delete-a-line", "truncate", "delete-file"])
def test_tampering_with_a_sealed_file_fails_verification(settings, capsys, tamper, words):
    _requests(settings, TODAY - timedelta(days=2), 2)
    target = _requests(settings, TODAY - timedelta(days=1), 3)
    _seal(settings)
    with connect(settings.warehouse_path) as con:
        write_checkpoint(con, settings.witness)
    assert _cli_verify(capsys)[0] == 0
    seal_seq = _seal_records(settings)[1]["seq"]
    size = target.stat().st_size

    tamper(target)

    result = _verify(settings)
    assert not result.ok and result.first_bad_seq == seal_seq, result.summary()
    expected = f"sealed API audit file api_audit/{target.name} " + words.format(size=size)
    assert result.reason.startswith(expected), result.reason
    code, lines = _cli_verify(capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"FAILED at seq {seal_seq}: {expected}")
    assert WHO not in lines[0] and PARAM not in lines[0]
    # The chain itself is intact: only the file fails, and the witness can still vouch for the chain.
    with connect(settings.warehouse_path, read_only=True) as con:
        assert verify_chain(con, settings.witness).ok


def test_several_tampered_files_are_counted_in_one_line(settings, capsys):
    first = _requests(settings, TODAY - timedelta(days=3), 2)
    second = _requests(settings, TODAY - timedelta(days=2), 2)
    _seal(settings)
    first.unlink()
    _truncate(second)
    code, lines = _cli_verify(capsys)
    assert code == 1 and len(lines) == 1
    assert f"api_audit/{first.name} is missing" in lines[0]
    assert lines[0].endswith("; 1 more sealed API audit file(s) fail")


def test_malformed_lines_are_counted_and_sealed_as_they_are(settings):
    path = _requests(settings, TODAY - timedelta(days=1), 2)
    with open(path, "ab") as handle:   # a garbled line, a record without a time, a torn last line
        handle.write(f"{MALFORMED} not json\n".encode())
        handle.write(b'{"who":"x"}\n')
        handle.write(b'{"at":"2026-')
    outcome = _seal(settings)
    assert outcome.summary()["sealed"] == 1 and outcome.summary()["malformed_lines"] == 3
    details = json.loads(_seal_records(settings)[0]["details"])
    data = path.read_bytes()
    assert (details["lines"], details["malformed_lines"], details["bytes"]) == (5, 3, len(data))
    assert details["sha256"] == hashlib.sha256(data).hexdigest()
    day = (TODAY - timedelta(days=1)).isoformat()
    assert (details["first_at"], details["last_at"]) == (f"{day}T08:01:00.000000Z", f"{day}T08:02:00.000000Z")
    assert _verify(settings).ok


def _old_day(years: int = 3) -> date:
    return TODAY - timedelta(days=365 * years)


def _certificates(settings) -> list[dict]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return fetch_dicts(con, "SELECT * FROM deletion_certificates WHERE object_kind = 'api_audit' ORDER BY object_id")


def test_retention_deletes_sealed_files_past_the_period_with_certificates(settings, capsys):
    sealed_old = _requests(settings, _old_day(), 3)
    _seal(settings)                                             # sealed by the daily checkpoint
    unsealed_old = _requests(settings, _old_day() + timedelta(days=1), 2)   # retention seals it first
    recent = _requests(settings, TODAY - timedelta(days=30), 2)
    today = _requests(settings, TODAY, 1)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (sealed_old, unsealed_old)}

    outcome = apply_retention(settings, actor="tester", purpose="test")

    assert not sealed_old.exists() and not unsealed_old.exists()
    assert recent.exists() and today.exists()
    assert "api_audit: 2 closed file(s) sealed before planning" in outcome.notes   # unsealed_old, recent
    certificates = _certificates(settings)
    assert [c["object_id"] for c in certificates] == sorted(f"api_audit/{p.name}" for p in (sealed_old, unsealed_old))
    for certificate in certificates:
        name = certificate["object_id"].split("/", 1)[1]
        assert certificate["content_sha256"] == digests[name]
        assert certificate["policy"] == "platform-datasets#retention:api_audit"
        assert certificate["retention_period"] == "2y"
        assert certificate["method"] == "unlink+fsync(dir)" and certificate["verification"] == "verified: absent"
        assert certificate["partition_key"] == name[:10]
    assert {c["object_id"]: c["rows"] for c in certificates} == {f"api_audit/{sealed_old.name}": 3,
                                                                 f"api_audit/{unsealed_old.name}": 2}
    # Deleted with a certificate: verification stays clean; the two kept files are sealed and intact.
    result = _verify(settings)
    assert result.ok and result.sealed_files == 1, result.summary()   # recent; today's stays open
    assert _cli_verify(capsys)[0] == 0
    with connect(settings.warehouse_path, read_only=True) as con:
        deleted = con.execute("SELECT object_id FROM audit_log WHERE action = 'retention.deleted' "
                              "AND object_kind = 'api_audit' ORDER BY object_id").fetchall()
    assert [row[0] for row in deleted] == [c["object_id"] for c in certificates]
    # A second run finds nothing more to delete.
    assert not [d for d in apply_retention(settings, actor="tester", purpose="test").deletions
                if d.object_kind == "api_audit"]


def test_retention_keeps_a_file_that_differs_from_its_seal(settings):
    path = _requests(settings, _old_day(), 3)
    _seal(settings)
    _drop_a_line(path)
    outcome = apply_retention(settings, actor="tester", purpose="test")
    assert path.exists() and not _certificates(settings)
    assert "api_audit: 1 expired file(s) not deleted: they differ from their seal (evidence kept)" in outcome.notes
    assert not _verify(settings).ok


def test_retention_never_deletes_an_unsealed_file(settings):
    # The dry run counts what the real run would do; the open file of today is never sealed.
    path = _requests(settings, _old_day(), 2)
    dry = apply_retention(settings, dry_run=True, actor="tester", purpose="test")
    assert [d.object_id for d in dry.deletions if d.object_kind == "api_audit"] == [f"api_audit/{path.name}"]
    assert path.exists() and not _seal_records(settings), "a dry run writes nothing"
    # A real run's planner, should sealing not have happened (an unreadable file): skipped with the reason.
    with connect(settings.warehouse_path) as con:
        notes: list[str] = []
        assert plan_api_audit(con, settings, load_policy(settings), datetime.now(timezone.utc), False, False, notes) == []
    assert notes == ["api_audit: 1 expired file(s) not deleted: not sealed"]
    assert path.exists()


def test_the_period_comes_from_the_contract(settings, tmp_path):
    contracts = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, contracts)
    document = yaml.safe_load((contracts / "platform_datasets.yaml").read_text(encoding="utf-8"))
    [sla] = [s for s in document["slaProperties"] if s.get("element") == "api_audit"]
    sla.update(value=30, unit="d")
    (contracts / "platform_datasets.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    custom = dataclasses.replace(settings, contracts_dir=contracts)
    expired = _requests(custom, TODAY - timedelta(days=40), 2)
    kept = _requests(custom, TODAY - timedelta(days=20), 2)
    apply_retention(custom, actor="tester", purpose="test")
    assert not expired.exists() and kept.exists()
    assert [c["retention_period"] for c in _certificates(custom)] == ["30d"]


def test_a_sealed_file_gone_past_retention_is_certified_again(settings, capsys):
    # A crash between retention's unlink and its commit leaves a sealed file gone without a record:
    # verification reports it until the next retention run certifies the absence.
    path = _requests(settings, _old_day(), 2)
    _seal(settings)
    path.unlink()
    assert _cli_verify(capsys)[0] == 1
    apply_retention(settings, actor="tester", purpose="test")
    [certificate] = _certificates(settings)
    assert certificate["object_id"] == f"api_audit/{path.name}" and certificate["verification"] == "verified: absent"
    assert _cli_verify(capsys)[0] == 0


def test_the_audit_log_asset_seals_and_leaves_no_line_content_anywhere(settings, tmp_path, capsys):
    sealed = _requests(settings, TODAY - timedelta(days=2), 3)
    with open(sealed, "a", encoding="utf-8") as handle:
        handle.write(f"{MALFORMED}\n")
    open_file = _requests(settings, TODAY, 2)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    resources = {"crowd": CrowdPlatform(home=str(settings.home))}
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        result = dg.materialize([audit_log_checkpoint], resources=resources, instance=instance)
        assert result.success
        metadata = result.asset_materializations_for_node("audit_log")[0].metadata
        assert metadata["api_audit_sealed"].value == {"sealed": 1, "already_sealed": 0, "open": 1, "unreadable": 0,
                                                      "malformed_lines": 1, "other_entries": 0}
        assert metadata["api_audit_files_verified"].value == 1
        checkpoints = (settings.witness / "checkpoints.jsonl").read_text().splitlines()
        # The checkpoint vouches for the seal record (sealed before it).
        seal_seq = _seal_records(settings)[0]["seq"]
        assert json.loads(checkpoints[-1])["last_seq"] >= seal_seq

        _drop_a_line(sealed)
        failed = dg.materialize([audit_log_checkpoint], resources=resources, instance=instance, raise_on_error=False)
        assert not failed.success
        assert len((settings.witness / "checkpoints.jsonl").read_text().splitlines()) == len(checkpoints) + 1, \
            "the witness still vouches for the chain that holds the evidence"
    code, lines = _cli_verify(capsys)
    assert code == 1 and f"api_audit/{sealed.name} changed after its seal" in lines[0]
    apply_retention(settings, actor="tester", purpose="test")

    # Nothing of a line's content outside the API audit files: warehouse (audit log, certificates),
    # witness, Dagster's storage and event log, and what the commands printed.
    assert open_file.exists()
    needles = [WHO.encode(), PARAM.encode(), MALFORMED.encode()]
    with connect(settings.warehouse_path, read_only=True) as con:
        text = json.dumps([con.execute(f"SELECT * FROM {table}").fetchall()
                           for table in ("audit_log", "deletion_certificates")], default=str).encode()
    assert not any(needle in text for needle in needles)
    printed = "\n".join(lines).encode()
    assert not any(needle in printed for needle in needles)
    scanned = [p for p in [*settings.home.rglob("*"), *settings.witness.rglob("*"), *dagster_home.rglob("*")]
               if p.is_file() and p.parent != audit_dir(settings.home)]
    assert any(p.suffix == ".db" for p in scanned), "Dagster's SQLite storage must be among the scanned files"
    hits = [str(p) for p in scanned if any(needle in p.read_bytes() for needle in needles)]
    assert hits == []
