"""Audit chain against an adversary with write access to the warehouse (issue 14): one test per
kind of tampering, on a real DuckDB file, each asserting the specific verdict. Pruning the head
is trusted only when a witness checkpoint older than the audit retention covers it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from crowd_platform.cli import main
from crowd_platform.common import audit
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform_tests.support.audit_log import run_sql, verify
from crowd_platform.governance.audit_chain import (
    CHECKPOINTS_FILE,
    PRUNE_ACTION,
    format_recorded_at,
    read_checkpoints,
    VerifyResult,
    verify_chain,
    write_checkpoint,
)
from crowd_platform.governance.retention import apply_retention

NOW = datetime.now(timezone.utc)
YEAR = timedelta(days=365)


@pytest.fixture()
def settings(witnessed_home):
    _append(witnessed_home, 8)
    return witnessed_home


def _append(settings, count, start=1):
    with connect(settings.warehouse_path) as con:
        for number in range(start, start + count):
            audit.append(con, "drop.accepted", purpose="test", actor="tester", object_kind="drop",
                         object_id=f"drop-{number}", run_id="run-1", details={"rows": number * 10})


def _rechain(settings, start, edit=None, at=None):
    """Rewrite records from seq ``start`` on, recomputing every hash: a consistent forgery.
    ``edit`` changes a record's actor; ``at(seq)`` redates it (setup of an old history)."""
    with connect(settings.warehouse_path) as con:
        prev = con.execute("SELECT record_hash FROM audit_log WHERE seq = ?", [start - 1]).fetchone()
        prev = prev[0] if prev else audit.GENESIS_HASH
        rows = con.execute("SELECT seq, recorded_at, actor, purpose, action, object_kind, object_id, run_id, details "
                           "FROM audit_log WHERE seq >= ? ORDER BY seq", [start]).fetchall()
        for seq, recorded_at, actor, purpose, action, kind, object_id, run_id, details in rows:
            recorded = format_recorded_at(at(seq) if at else recorded_at)
            actor = edit(actor) if edit else actor
            digest = audit.record_hash(prev, seq, recorded, actor, purpose, action, kind, object_id, run_id, details)
            con.execute("UPDATE audit_log SET recorded_at = ?::TIMESTAMPTZ, actor = ?, prev_hash = ?, record_hash = ? "
                        "WHERE seq = ?", [recorded, actor, prev, digest, seq])
            prev = digest


def _age(settings, start, ago):
    """Date records from ``start`` on ``ago`` in the past, one minute apart."""
    _rechain(settings, start, at=lambda seq: NOW - ago + timedelta(minutes=seq))


def _checkpoint(settings, created_at=None):
    with connect(settings.warehouse_path) as con:
        return write_checkpoint(con, settings.witness, created_at=created_at)


def _forge_prune(settings, through):
    """Delete the head through ``through`` and append a prune record with its real hash."""
    with connect(settings.warehouse_path) as con:
        through_hash = con.execute("SELECT record_hash FROM audit_log WHERE seq = ?", [through]).fetchone()[0]
        con.execute("DELETE FROM audit_log WHERE seq <= ?", [through])
        audit.append(con, PRUNE_ACTION, purpose="test", details={"through_seq": through, "through_hash": through_hash})


def _failed(result, seq, words):
    assert not result.ok and result.status == "failed", result.summary()
    assert result.first_bad_seq == seq and words in result.reason, result.summary()
    assert result.summary().startswith(f"FAILED at seq {seq}:")


def test_witness_outside_home_and_clean_verdict(settings, capsys):
    assert not settings.witness.is_relative_to(settings.home)
    _checkpoint(settings)
    result = verify(settings)
    assert result.status == "ok" and result.summary() == "OK: 8 records, last seq 8, 1 witness checkpoint(s) matched"
    assert main(["audit", "verify"]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_edited_record(settings):
    _checkpoint(settings)
    run_sql(settings, "UPDATE audit_log SET details = '{\"rows\":999}' WHERE seq = 5")
    _failed(verify(settings), 5, "record changed")


def test_deleted_middle_record(settings):
    _checkpoint(settings)
    run_sql(settings, "DELETE FROM audit_log WHERE seq = 4")
    _failed(verify(settings), 4, "record seq 4 is missing")


def test_deleted_oldest_records_without_prune_record(settings):
    _checkpoint(settings)
    run_sql(settings, "DELETE FROM audit_log WHERE seq <= 3")
    _failed(verify(settings), 1, "no audit.pruned record covers them")


def test_deleted_oldest_with_forged_prune_record_fails(settings):
    # The review's attack: the head is deleted and a prune record with the right hash appended;
    # a (recent) witness checkpoint covers it, but those records were far from the audit retention.
    _checkpoint(settings)
    _append(settings, 4, start=9)
    _forge_prune(settings, 6)
    result = verify(settings)
    _failed(result, 13, "older than the audit retention")
    assert "OK" not in result.summary()


def test_prune_record_not_covered_by_a_checkpoint(settings):
    # History 3 years old, but the only (old) checkpoint saw seq 1..4: nothing vouches for seq 6.
    _age(settings, 1, 3 * YEAR)
    with connect(settings.warehouse_path) as con:  # the witness as it was when the log ended at seq 4
        fourth = con.execute("SELECT record_hash FROM audit_log WHERE seq = 4").fetchone()[0]
        write_checkpoint(con, settings.witness, result=VerifyResult(True, None, None, 4, 4, fourth, first_seq=1),
                         created_at=NOW - 3 * YEAR + timedelta(days=1))
    _forge_prune(settings, 6)
    _failed(verify(settings), 9, "not covered by a witness checkpoint")


def test_prune_of_records_younger_than_retention(settings):
    # A witness covers seq 8 exactly (same hash), but only one year ago: the 2-year audit
    # retention (data_contracts/platform_datasets.yaml) had not passed.
    _age(settings, 1, YEAR)
    _checkpoint(settings, created_at=NOW - YEAR + timedelta(hours=1))
    _append(settings, 2, start=9)
    _forge_prune(settings, 8)
    _failed(verify(settings), 11, "older than the audit retention (17520 h)")
    with connect(settings.warehouse_path, read_only=True) as con:  # a shorter retention would allow it
        assert verify_chain(con, settings.witness, retention_hours=24 * 180).ok


def test_reordered_records(settings):
    _checkpoint(settings)
    with connect(settings.warehouse_path) as con:
        con.execute("UPDATE audit_log SET seq = 100 WHERE seq = 3")
        con.execute("UPDATE audit_log SET seq = 3 WHERE seq = 6")
        con.execute("UPDATE audit_log SET seq = 6 WHERE seq = 100")
    _failed(verify(settings), 3, "prev_hash does not match")


def test_consistent_rewrite_after_last_checkpoint_is_not_provable(settings):
    _checkpoint(settings)
    _append(settings, 4, start=9)
    _rechain(settings, 10, edit=lambda actor: "someone-else")
    result = verify(settings)
    # Undetectable until the next checkpoint, so never reported as a clean OK.
    assert result.ok and result.status == "unwitnessed_tail" and result.witnessed_through == 8
    summary = result.summary()
    assert not summary.startswith("OK:") and summary.startswith("OK (unwitnessed tail): 12 records")
    assert "seq 9..12 not provable without a newer checkpoint" in summary


def test_consistent_rewrite_before_last_checkpoint(settings):
    _checkpoint(settings)
    _append(settings, 4, start=9)
    _rechain(settings, 3, edit=lambda actor: "someone-else")
    _failed(verify(settings), 8, "differs from witness checkpoint")


@pytest.mark.parametrize("which", ["jsonl", "both"])
def test_witness_checkpoint_edited(settings, which):
    checkpoint = _checkpoint(settings)
    forged = {**checkpoint, "last_record_hash": "f" * 64}
    (settings.witness / CHECKPOINTS_FILE).write_text(json.dumps(forged) + "\n")
    if which == "both":
        (settings.witness / f"{checkpoint['date']}.json").write_text(json.dumps(forged) + "\n")
    _failed(verify(settings), 8, "differs from witness checkpoint")


def test_pruned_records_present_again(settings):
    # A checkpoint saw a log starting at seq 5; a log starting at 1 means pruned records came back.
    _checkpoint(settings)
    line = json.loads((settings.witness / CHECKPOINTS_FILE).read_text())
    (settings.witness / CHECKPOINTS_FILE).write_text(json.dumps({**line, "first_seq": 5}) + "\n")
    (settings.witness / f"{line['date']}.json").unlink()
    _failed(verify(settings), 1, "present again")


def test_old_checkpoints_without_first_seq_are_read(settings):
    checkpoint = _checkpoint(settings)
    legacy = {key: value for key, value in checkpoint.items() if key != "first_seq"}
    (settings.witness / CHECKPOINTS_FILE).write_text(json.dumps(legacy) + "\n")
    (settings.witness / f"{checkpoint['date']}.json").write_text(json.dumps(legacy) + "\n")
    assert checkpoint["first_seq"] == 1 and checkpoint["last_seq"] == 8
    assert [c["first_seq"] for c in read_checkpoints(settings.witness)] == [None]
    assert verify(settings).status == "ok"


def test_legitimate_prune_by_retention_verifies(settings):
    _age(settings, 1, 3 * YEAR)
    _checkpoint(settings, created_at=NOW - 3 * YEAR + timedelta(days=1))
    _append(settings, 3, start=9)  # recent: kept
    outcome = apply_retention(settings, actor="test-dpo", purpose="retention-test")
    assert outcome.audit_pruned_through == 8, outcome.notes
    with connect(settings.warehouse_path, read_only=True) as con:
        first, prune = con.execute("SELECT min(seq), max(seq) FILTER (WHERE action = ?) FROM audit_log",
                                   [PRUNE_ACTION]).fetchone()
    assert first == 9 and prune > 11
    result = verify(settings)
    assert result.ok and result.status == "unwitnessed_tail" and result.first_seq == 9
    _checkpoint(settings)
    result = verify(settings)
    assert result.status == "ok" and result.summary().startswith("OK: "), result.summary()


def test_retention_does_not_prune_past_the_witness(settings):
    # Records 3 years old but the only checkpoint is recent: the prune would not verify, so none.
    _age(settings, 1, 3 * YEAR)
    _checkpoint(settings)
    outcome = apply_retention(settings, actor="test-dpo", purpose="retention-test")
    assert outcome.audit_pruned_through is None
    assert any("no witness checkpoint older than the audit retention" in note for note in outcome.notes)
    assert verify(settings).ok


def test_witness_on_object_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("CROWD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CROWD_WITNESS", f"memory://witness-{tmp_path.name}/audit")
    settings = get_settings()
    settings.ensure_dirs()
    _append(settings, 3)
    first = _checkpoint(settings, created_at=NOW - timedelta(days=1))
    _append(settings, 2, start=4)
    second = _checkpoint(settings)
    assert [c["last_seq"] for c in read_checkpoints(settings.witness)] == [first["last_seq"], second["last_seq"]] == [3, 5]
    assert len(list((settings.witness / "checkpoints").iterdir())) == 2  # one object per checkpoint
    assert verify(settings).status == "ok"
    _rechain(settings, 2, edit=lambda actor: "someone-else")
    _failed(verify(settings), 3, "differs from witness checkpoint")


def test_witness_path_from_config(settings, tmp_path):
    configured = replace(settings, witness_override=None).with_config(governance={"witness_path": str(tmp_path / "elsewhere")})
    assert configured.witness == tmp_path / "elsewhere"
    assert str(configured.with_config(governance={"witness_path": "s3://bucket/witness"}).witness) == "s3://bucket/witness"
