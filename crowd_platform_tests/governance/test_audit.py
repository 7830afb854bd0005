"""Audit chain: tampering by direct SQL on a real DuckDB file is caught at the first bad record;
witness checkpoints catch a cleanly truncated tail; pruning keeps the chain anchored."""

from __future__ import annotations

import json
from datetime import date

import pytest

from crowd_platform.cli import main
from crowd_platform.common import audit
from crowd_platform.governance.audit_chain import PRUNE_ACTION, read_checkpoints, verify_chain, write_checkpoint
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform_tests.support.audit_log import run_sql, verify


@pytest.fixture()
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    settings = get_settings()
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        for number in range(1, 9):
            audit.append(con, "drop.accepted", purpose="test", actor="tester", object_kind="drop",
                         object_id=f"drop-{number}", run_id="run-1", details={"rows": number * 10})
    return settings


def test_intact_chain_verifies(settings):
    result = verify(settings)
    assert result.ok and result.records == 8 and result.last_seq == 8 and result.first_bad_seq is None


def test_changed_record_is_caught(settings):
    run_sql(settings, "UPDATE audit_log SET details = '{\"rows\":999}' WHERE seq = 5")
    result = verify(settings)
    assert not result.ok and result.first_bad_seq == 5 and "changed" in result.reason


def test_changed_actor_with_recomputed_own_hash_breaks_next_link(settings):
    # A forger who recomputes the tampered record's own hash still breaks the next record's prev_hash.
    with connect(settings.warehouse_path) as con:
        row = con.execute("SELECT seq, recorded_at, actor, purpose, action, object_kind, object_id, run_id, details, "
                          "prev_hash FROM audit_log WHERE seq = 3").fetchone()
        from crowd_platform.governance.audit_chain import format_recorded_at
        forged = audit.record_hash(row[9], row[0], format_recorded_at(row[1]), "someone-else", *row[3:9])
        con.execute("UPDATE audit_log SET actor = 'someone-else', record_hash = ? WHERE seq = 3", [forged])
    result = verify(settings)
    assert not result.ok and result.first_bad_seq == 4 and "prev_hash" in result.reason


def test_deleted_record_is_caught(settings):
    run_sql(settings, "DELETE FROM audit_log WHERE seq = 4")
    result = verify(settings)
    assert not result.ok and result.first_bad_seq == 4 and "missing" in result.reason


def test_deleted_first_record_is_caught(settings):
    run_sql(settings, "DELETE FROM audit_log WHERE seq = 1")
    result = verify(settings)
    assert not result.ok and result.first_bad_seq == 1


def test_inserted_record_is_caught(settings):
    # Make room at seq 5 by shifting the tail, then insert a plausible record there.
    with connect(settings.warehouse_path) as con:
        for seq in range(8, 4, -1):
            con.execute("UPDATE audit_log SET seq = seq + 1 WHERE seq = ?", [seq])
        prev = con.execute("SELECT record_hash FROM audit_log WHERE seq = 4").fetchone()[0]
        recorded = "2026-11-27T00:00:00.000000Z"
        digest = audit.record_hash(prev, 5, recorded, "intruder", "test", "drop.accepted", "drop", "drop-x", "run-1", "{}")
        con.execute("INSERT INTO audit_log VALUES (5, ?::TIMESTAMPTZ, 'intruder', 'test', 'drop.accepted', 'drop', "
                    "'drop-x', 'run-1', '{}', ?, ?)", [recorded, prev, digest])
    result = verify(settings)
    # The inserted record chains to seq 4, but the shifted next record's content no longer hashes.
    assert not result.ok and result.first_bad_seq == 6


def test_appended_forged_record_is_caught(settings):
    run_sql(settings, "INSERT INTO audit_log VALUES (9, now(), 'x', 'test', 'drop.accepted', NULL, NULL, NULL, '{}', ?, ?)",
         ["0" * 64, "f" * 64])
    result = verify(settings)
    assert not result.ok and result.first_bad_seq == 9


def test_reordered_records_are_caught(settings):
    with connect(settings.warehouse_path) as con:
        con.execute("UPDATE audit_log SET seq = 100 WHERE seq = 3")
        con.execute("UPDATE audit_log SET seq = 3 WHERE seq = 6")
        con.execute("UPDATE audit_log SET seq = 6 WHERE seq = 100")
    result = verify(settings)
    assert not result.ok and result.first_bad_seq == 3


def test_witness_catches_clean_truncation(settings):
    with connect(settings.warehouse_path) as con:
        checkpoint = write_checkpoint(con, settings.witness, day=date(2020, 4, 1))
    assert checkpoint["last_seq"] == 8 and checkpoint["count"] == 8
    assert json.loads((settings.witness / "2020-04-01.json").read_text())["last_record_hash"] == checkpoint["last_record_hash"]
    assert len(read_checkpoints(settings.witness)) == 1
    run_sql(settings, "DELETE FROM audit_log WHERE seq >= 7")  # the remaining chain is internally consistent
    with connect(settings.warehouse_path, read_only=True) as con:
        assert verify_chain(con).ok, "without a witness the cut is invisible"
    result = verify(settings)
    assert not result.ok and result.first_bad_seq == 8 and "truncated" in result.reason


def test_checkpoint_refuses_broken_chain(settings):
    run_sql(settings, "UPDATE audit_log SET purpose = 'other' WHERE seq = 2")
    with connect(settings.warehouse_path) as con, pytest.raises(ValueError):
        write_checkpoint(con, settings.witness)
    assert not (settings.witness / "checkpoints.jsonl").exists()


def test_prune_record_without_witness_is_not_trusted(settings):
    # A prune record alone proves nothing: anyone who can delete the head can append one
    # (legitimate pruning: crowd_platform_tests/governance/test_audit_tamper.py).
    with connect(settings.warehouse_path) as con:
        through_hash = con.execute("SELECT record_hash FROM audit_log WHERE seq = 3").fetchone()[0]
        con.execute("DELETE FROM audit_log WHERE seq <= 3")
        audit.append(con, PRUNE_ACTION, purpose="test", details={"through_seq": 3, "through_hash": through_hash})
    result = verify(settings)
    assert not result.ok and result.first_bad_seq == 9 and "not covered by a witness checkpoint" in result.reason


def test_cli_verify_exit_codes(settings, capsys):
    assert main(["audit", "verify", "--checkpoint"]) == 0
    out = capsys.readouterr().out
    # Nothing vouched for the records before this first checkpoint; the default witness is in CROWD_HOME.
    assert out.startswith("OK (unwitnessed tail): 8 records") and "checkpoint written" in out
    assert "WARNING: witness is inside CROWD_HOME" in out.splitlines()[0]
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    # The audit.checkpoint record (seq 9) comes after the checkpoint it records.
    assert "1 witness checkpoint(s) matched; seq 9..9 not provable without a newer checkpoint" in out
    run_sql(settings, "UPDATE audit_log SET object_id = 'drop-99' WHERE seq = 2")
    assert main(["audit", "verify"]) == 1
    assert capsys.readouterr().out.startswith("FAILED at seq 2:")
