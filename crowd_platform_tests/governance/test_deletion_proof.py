"""Deletion proof everywhere: every file of a drop the platform deletes (a superseded lake
file, a released or rejected quarantine copy, a raw-MSISDN drop, everything at sunset) has a
deletion certificate, and a drop carrying phone numbers leaves none of them on disk.

One small scenario through real Dagster runs and a real DuckDB warehouse; after every step the
files under CROWD_HOME are compared with the step before: each file whose content is gone
from everywhere must be covered by a certificate of its drop written in that step.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from crowd_platform.cli import main
from crowd_platform.common.contracts import contract_for
from crowd_platform.common.erasure import reason_policy
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import CONTRACTS_DIR, get_settings
from crowd_platform.common.warehouse import connect, fetch_dicts
from crowd_platform.governance.retention import sunset
from crowd_platform.ingestion.assets import operator_drops, staged_events
from crowd_platform.ingestion.fixtures import canonical_events
from crowd_platform.ingestion.quarantine import QuarantineDecisionError, reject_drop, release_drop
from crowd_platform.simulator.drops import write_drop

WINDOW = datetime(2020, 3, 31, 1, 0, tzinfo=timezone.utc)
WINDOW_END = WINDOW + timedelta(minutes=15)
PARTITION = "2020-03-31-01:00"
MSISDNS = ["+6281234567890", "081298765432", "6281311122233"]
DROP_ROOTS = ("landing", "raw", "staging", "lake", "quarantine")


def _run(settings) -> None:
    with dg.instance_for_test() as instance:
        assert dg.materialize([operator_drops, staged_events], resources={"crowd": CrowdPlatform(home=str(settings.home))},
                              instance=instance, partition_key=PARTITION).success


def _drops(settings) -> dict[str, dict]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return {row["drop_id"]: row for row in fetch_dicts(con, "SELECT * FROM drops ORDER BY received_at")}


def _certificates(settings) -> list[dict]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return fetch_dicts(con, "SELECT * FROM deletion_certificates ORDER BY deleted_at, certificate_id")


def _snapshot(settings) -> dict[Path, str]:
    """Every file (or symlink) under the drop folders -> sha256 of its content."""
    found = {}
    for name in DROP_ROOTS:
        for dirpath, _dirs, files in os.walk(getattr(settings, name)):
            for file in files:
                path = Path(dirpath) / file
                content = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
                found[path] = hashlib.sha256(content).hexdigest()
    return found


def _owners(settings, drops: dict[str, dict], path: Path) -> list[tuple[str | None, str]]:
    """(drop_id, certificate kind) pairs any of which may certify a deleted file, from where it was."""
    if path.is_relative_to(settings.lake):
        return [(path.stem, "lake_partition")]
    for kind, root in (("quarantine", settings.quarantine), ("staging", settings.staging)):
        if path.is_relative_to(root):
            return [(path.relative_to(root).parts[0], kind)]
    if path.is_relative_to(settings.raw):
        sha = path.name.split(".")[0]
        return [(d, "raw_drop") for d, row in drops.items() if row["sha256"] == sha]
    # A landing file: its bytes went to raw/ and were deleted in the same step, or it repeated
    # the bytes of a drop already deleted.
    owners = [d for d, row in drops.items() if path.name in (row["file_name"], row["manifest_name"])]
    return [(d, kind) for d in owners for kind in ("raw_drop", "landing")]


def _vanished(before: dict[Path, str], after: dict[Path, str]) -> list[Path]:
    """Files whose content is gone from everywhere (a move keeps the same bytes elsewhere)."""
    still_there = set(after.values())
    return [path for path, digest in before.items() if path not in after and digest not in still_there]


def _uncertified(settings, before: dict[Path, str], after: dict[Path, str], certificates_before: int) -> list[str]:
    """Files whose content vanished in a step without a certificate of their drop from that step."""
    drops = _drops(settings)
    new = _certificates(settings)[certificates_before:]
    certified = {(c["object_id"], c["object_kind"]) for c in new}
    # Retention certifies a file no drops row points to (e.g. a released drop's kept report) by its path.
    orphans = [(settings.resolve(c["object_id"]), c["object_kind"]) for c in new if "/" in c["object_id"]]
    missing = []
    for path in _vanished(before, after):
        owners = _owners(settings, drops, path)
        if not any(owner in certified or any(path.is_relative_to(o) and k == owner[1] for o, k in orphans) for owner in owners):
            missing.append(f"{path.relative_to(settings.home)} ({owners})")
    return missing


def _msisdn_hits(settings) -> list[str]:
    """Files under CROWD_HOME holding any test MSISDN, as bytes or gzip-inflated."""
    needles = [number.encode() for number in MSISDNS]
    hits = []
    for dirpath, _dirs, files in os.walk(settings.home):
        for file in files:
            path = Path(dirpath) / file
            if path.is_symlink():
                continue
            data = path.read_bytes()
            texts = [data]
            if data[:2] == b"\x1f\x8b":
                try:
                    texts.append(gzip.decompress(data))
                except (OSError, EOFError, zlib.error):
                    pass
            if any(needle in text for needle in needles for text in texts):
                hits.append(str(path.relative_to(settings.home)))
    return hits


def _break_indosat_contract(contracts: Path) -> None:
    """A contract bug: indosat's 'LU' event code left out, so its drops are quarantined."""
    for path in CONTRACTS_DIR.glob("*.yaml"):
        shutil.copy(path, contracts / path.name)
    contract_path = contracts / "indosat_events.yaml"
    document = yaml.safe_load(contract_path.read_text())
    event_type = next(prop for prop in document["schema"][0]["properties"] if prop["name"] == "event_type")
    event_type["quality"][0]["arguments"]["validValues"].remove("LU")
    contract_path.write_text(yaml.safe_dump(document, sort_keys=False))


def _drop(settings, operator: str, events: pl.DataFrame | None = None, *, delivery: int = 1, rows: int = 40, seed: int = 7):
    contract = contract_for(settings.contracts_dir, operator, "events")
    frame = events if events is not None else canonical_events(contract, WINDOW, rows, seed=seed)
    return write_drop(settings.landing, contract, frame, window_start=WINDOW, window_end=WINDOW_END, delivery=delivery)


def _with_msisdns(settings) -> pl.DataFrame:
    contract = contract_for(settings.contracts_dir, "telkomsel", "events")
    events = canonical_events(contract, WINDOW, 60, seed=21)
    numbers = pl.Series("n", MSISDNS + [None] * (events.height - len(MSISDNS)))
    return events.with_columns(pl.coalesce(numbers, pl.col("subscriber_key")).alias("subscriber_key"))


def _decide(settings, decision, *args):
    with connect(settings.warehouse_path) as con:
        return decision(settings, con, *args)


class _Steps:
    """Runs scenario steps, recording per step the files without certificate."""

    def __init__(self, settings):
        self.settings, self.uncertified, self.vanished = settings, {}, {}

    def __call__(self, name, action):
        before, certificates = _snapshot(self.settings), len(_certificates(self.settings))
        result = action()
        after = _snapshot(self.settings)
        self.vanished[name] = len(_vanished(before, after))
        self.uncertified[name] = _uncertified(self.settings, before, after, certificates)
        return result


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("deletion_proof")
    (root / "contracts").mkdir()
    _break_indosat_contract(root / "contracts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CROWD_HOME", str(root / "home"))
        patch.setenv("CROWD_CONTRACTS", str(root / "contracts"))
        patch.setenv("CROWD_ACTOR", "dpo@kominfo.example")
        settings = get_settings()
        settings.ensure_dirs()
        with connect(settings.warehouse_path):
            pass  # the schema, so the first snapshot can count certificates
        steps, seen = _Steps(settings), {}

        # Drops land before each step's first snapshot, so landing files count as well.
        _drop(settings, "telkomsel", rows=50)
        _drop(settings, "indosat", seed=1)
        _drop(settings, "indosat", seed=2, delivery=2)
        steps("first deliveries", lambda: _run(settings))
        seen["first_lake"] = {d: (settings.resolve(r["lake_path"]), r) for d, r in _drops(settings).items() if r["lake_path"]}
        seen["first_lake_sha"] = {d: hashlib.sha256(p.read_bytes()).hexdigest() for d, (p, _) in seen["first_lake"].items()}

        telkomsel = contract_for(settings.contracts_dir, "telkomsel", "events")
        _drop(settings, "telkomsel", canonical_events(telkomsel, WINDOW, 70, seed=3), delivery=2)
        _drop(settings, "telkomsel", _with_msisdns(settings), delivery=3)
        seen["landing_hits"] = _msisdn_hits(settings)  # the scan finds them while they are there
        steps("redelivery and raw msisdn", lambda: _run(settings))
        seen["msisdn_hits"] = _msisdn_hits(settings)

        _drop(settings, "telkomsel", _with_msisdns(settings), delivery=3)  # the same bytes again
        steps("raw msisdn resent", lambda: _run(settings))
        seen["resent_hits"] = _msisdn_hits(settings)
        drops = _drops(settings)
        msisdn_id = next(d for d, r in drops.items() if r["delivery"] == 3 and r["status"] == "quarantined")
        seen["duplicate"] = next(r for r in drops.values() if r["status"] == "duplicate")
        released_id, rejected_id = sorted(d for d, r in drops.items() if r["operator"] == "indosat")
        seen.update(msisdn_id=msisdn_id, released_id=released_id, rejected_id=rejected_id, msisdn_drop=drops[msisdn_id])
        seen["show"] = main(["quarantine", "show", msisdn_id])
        msisdn_folder = settings.resolve(drops[msisdn_id]["quarantine_path"])
        seen["msisdn_folder"] = sorted(p.name for p in msisdn_folder.iterdir())
        seen["msisdn_report"] = json.loads((msisdn_folder / "report.json").read_text())
        seen["release_msisdn"] = main(["quarantine", "release", msisdn_id])
        with connect(settings.warehouse_path) as con, pytest.raises(QuarantineDecisionError) as refused:
            release_drop(settings, con, msisdn_id)
        seen["release_refused"] = str(refused.value)
        steps("release", lambda: _decide(settings, release_drop, released_id))
        steps("reject", lambda: _decide(settings, reject_drop, rejected_id, "operator resends"))
        seen["before_sunset"] = len(_certificates(settings))
        seen["sunset"] = steps("sunset", lambda: sunset(settings, actor="dpo@kominfo.example"))
        yield {"settings": settings, "steps": steps.uncertified, "vanished": steps.vanished, **seen}


def test_every_deleted_file_has_a_certificate(scenario):
    assert scenario["steps"] == {"first deliveries": [], "redelivery and raw msisdn": [], "raw msisdn resent": [],
                                 "release": [], "reject": [], "sunset": []}
    # Each step after the first really deleted files (else the comparison proves nothing).
    vanished = scenario["vanished"]
    assert all(vanished[step] > 0 for step in ("redelivery and raw msisdn", "raw msisdn resent", "reject", "sunset")), vanished
    certificates = _certificates(scenario["settings"])
    assert certificates and all(c["verification"].startswith("verified") for c in certificates)
    assert all(c["content_sha256"] and len(c["content_sha256"]) == 64 for c in certificates if c["object_kind"] != "warehouse_rows")


def test_superseded_lake_file_deleted_with_certificate(scenario):
    settings = scenario["settings"]
    (old_id,) = [d for d, (_, row) in scenario["first_lake"].items() if row["operator"] == "telkomsel"]
    old_path = scenario["first_lake"][old_id][0]
    assert not old_path.exists()
    (certificate,) = [c for c in _certificates(settings) if c["object_id"] == old_id and c["object_kind"] == "lake_partition"
                      and c["policy"] != "platform-datasets#retention:sunset"]
    assert certificate["policy"] == reason_policy("superseded by delivery 2")
    assert certificate["content_sha256"] == scenario["first_lake_sha"][old_id]
    assert certificate["rows"] == 50 and certificate["run_id"] and certificate["verification"] == "verified: absent"
    assert certificate["partition_key"] == "events/date=2020-03-31/window=0100/operator=telkomsel"
    assert certificate["actor"] == "dpo@kominfo.example" and certificate["retention_period"] == "0h"


def test_release_and_reject_certify_the_quarantine_copies(scenario):
    settings = scenario["settings"]
    by_drop = {}
    for certificate in _certificates(settings):
        by_drop.setdefault(certificate["object_id"], []).append(certificate)
    released = [c for c in by_drop[scenario["released_id"]] if c["policy"] == reason_policy("quarantine released")]
    rejected = [c for c in by_drop[scenario["rejected_id"]] if c["policy"] == reason_policy("quarantine rejected")]
    assert [c["object_kind"] for c in released] == ["quarantine"] and [c["object_kind"] for c in rejected] == ["quarantine"]
    assert released[0]["bytes"] > 0 and rejected[0]["bytes"] > 0
    # Each drop was also certified when its staged copy went at quarantine.
    assert any(c["object_kind"] == "staging" for c in by_drop[scenario["rejected_id"]])


def test_raw_msisdn_drop_reduced_to_its_report(scenario):
    settings = scenario["settings"]
    assert scenario["landing_hits"] and all(hit.startswith("landing/") for hit in scenario["landing_hits"])
    assert scenario["msisdn_hits"] == [], "no file under CROWD_HOME may hold a raw MSISDN"
    drop = scenario["msisdn_drop"]  # as it was before sunset
    assert drop["status"] == "quarantined" and drop["raw_path"] is None and "raw_msisdn" in drop["reason"]
    certificates = [c for c in _certificates(settings) if c["object_id"] == scenario["msisdn_id"]
                    and c["policy"] == reason_policy("raw msisdn")]
    assert {c["object_kind"] for c in certificates} == {"raw_drop", "staging"}
    raw = next(c for c in certificates if c["object_kind"] == "raw_drop")
    assert raw["run_id"] and raw["verification"] == "verified: absent"
    assert scenario["show"] == 0 and scenario["release_msisdn"] == 2


def test_identical_resend_of_a_raw_msisdn_drop_is_deleted_with_a_certificate(scenario):
    duplicate = scenario["duplicate"]
    assert duplicate["superseded_by"] == scenario["msisdn_id"] and scenario["resent_hits"] == []
    (certificate,) = [c for c in _certificates(scenario["settings"]) if c["object_id"] == duplicate["drop_id"]]
    assert certificate["object_kind"] == "landing" and certificate["content_sha256"]
    assert certificate["policy"] == reason_policy("identical bytes to deleted drop")


def test_raw_msisdn_report_is_machine_readable_and_value_free(scenario):
    # The report and the operator's manifest (no subscriber value in it); never the data file.
    assert sorted(scenario["msisdn_folder"]) == sorted(["report.json", scenario["msisdn_report"]["manifest"]])
    report = scenario["msisdn_report"]
    section = report["raw_msisdn"]
    assert section["rules"] == ["subscriber_key_not_msisdn"] and section["columns"] == ["subscriber_key"]
    assert section["offending_rows"] == 3 and section["row_numbers"] == [1, 2, 3]
    assert section["original_sha256"] == report["sha256"] and section["data_deleted"] is True
    assert not any(number in json.dumps(report) for number in MSISDNS)
    assert "nothing to release" in scenario["release_refused"]


def test_sunset_certifies_every_object(scenario):
    settings = scenario["settings"]
    report = scenario["sunset"]
    certificates = _certificates(settings)[scenario["before_sunset"]:]
    assert report.outcome.deletions and len(certificates) >= len(report.outcome.deletions)
    assert {c["object_kind"] for c in certificates} >= {"raw_drop", "lake_partition", "quarantine"}
    assert all(c["policy"].endswith(":sunset") for c in certificates if c["object_id"] != "audit_log")
    assert not [p for p in settings.lake.rglob("*") if p.is_file()]
    assert not [p for p in settings.quarantine.rglob("*") if p.is_file()]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        uncertified = con.execute("SELECT count(*) FROM deletion_certificates WHERE NOT starts_with(verification, 'verified')").fetchone()[0]
    assert uncertified == 0
