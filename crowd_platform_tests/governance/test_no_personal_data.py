"""The personal-data scanner finds planted subscriber values where a naive grep would not
(SQLite cells, zlib blobs, gzip files), finds nothing in clean files, and finds nothing in the
Dagster storage, compute logs and witness files of a real run of the governance assets."""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
import zlib
from datetime import timedelta

import dagster as dg

from crowd_platform.governance.defs import defs as governance_defs
from crowd_platform.governance.assets import audit_log_checkpoint, retention
from crowd_platform.governance.privacy_scan import contains_any, fingerprint, scan_for_hex_keys, scan_for_subscriber_values
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.settings import get_settings
from crowd_platform.common.warehouse import connect
from crowd_platform_tests.support.retention_drops import NEW_WINDOW, OLD_WINDOW, ingest_like

KEY = hashlib.sha256(b"planted subscriber").hexdigest()
MSISDN = "6281234567890"


def test_scanner_finds_planted_values_and_nothing_in_clean_files(tmp_path):
    database = tmp_path / "storage.db"
    with sqlite3.connect(database) as con:
        con.execute("CREATE TABLE event_logs (id INTEGER, event TEXT, body BLOB)")
        con.execute("INSERT INTO event_logs VALUES (1, ?, NULL)", [f'{{"metadata": {{"who": "{KEY}"}}}}'])
        # Dagster stores snapshot bodies zlib-compressed: invisible to a byte grep of the file.
        con.execute("INSERT INTO event_logs VALUES (2, 'x', ?)", [zlib.compress(f"msisdn={MSISDN}".encode() * 50)])
    (tmp_path / "log.txt.gz").write_bytes(gzip.compress(f"line with {KEY}\n".encode()))
    (tmp_path / "clean.txt").write_text("nothing personal here " + "ab" * 40)
    hits = scan_for_subscriber_values([tmp_path], [KEY, MSISDN])
    places = {(h.path.split("/")[-1], h.where, h.needle_index) for h in hits}
    assert ("storage.db", "sqlite:event_logs.event", 0) in places
    assert ("storage.db", "sqlite-zlib:event_logs.body", 1) in places
    assert ("log.txt.gz", "gzip", 0) in places
    assert not [h for h in hits if h.path.endswith("clean.txt")]
    assert all(KEY not in repr(h) and MSISDN not in repr(h) for h in hits), "a hit must not carry the value"
    assert hits[0].fingerprint in {fingerprint(KEY), fingerprint(MSISDN)}
    assert scan_for_subscriber_values([tmp_path / "clean.txt"], [KEY, MSISDN]) == []
    assert scan_for_hex_keys([tmp_path], allowed=set()) == {str(tmp_path / "log.txt.gz"): 1, str(database): 1}
    assert scan_for_hex_keys([tmp_path], allowed={KEY}) == {}


def test_contains_any_finds_keys_wherever_they_sit_and_agrees_with_a_plain_search():
    import os
    import random

    keys = [hashlib.sha256(str(number).encode()).hexdigest() for number in range(5000)]
    noise = os.urandom(200_000)
    assert not contains_any(noise, keys)
    # Alone, glued to other hex (DuckDB stores strings back to back), at the very end, and a non-hex needle.
    for data in (noise[:1000] + keys[4321].encode() + noise[1000:],
                 b"ab" + keys[7].encode() + keys[8].encode()[:40] + noise,
                 b"0123456789abcdef" * 9 + keys[4999].encode(),
                 noise + b"+628123456789" + noise):
        assert contains_any(data, keys + ["+628123456789"])
    assert not contains_any(keys[1].upper().encode(), keys)  # bytes, not case-folded, like the old regex
    rng = random.Random(5)
    for _ in range(50):  # random hex-heavy data: the same verdict as a substring search
        data = bytes(rng.choice(b"0123456789abcdefxyz") for _ in range(3000))
        needles = [data[start:start + 64].decode("latin-1") for start in (rng.randrange(0, 2936),)] if rng.random() < 0.5 else []
        needles += keys[:20]
        assert contains_any(data, needles) == any(needle.encode("latin-1") in data for needle in needles)


def test_scan_reports_every_key_with_its_offset_even_back_to_back(tmp_path):
    keys = [hashlib.sha256(str(number).encode()).hexdigest() for number in range(3000)]
    (tmp_path / "pages.bin").write_bytes(b"\x00" * 10 + keys[5].encode() + keys[2999].encode() + b"; +628123456789")
    hits = scan_for_subscriber_values([tmp_path], keys + ["+628123456789"])
    assert sorted((hit.needle_index, hit.offset) for hit in hits) == [(5, 10), (2999, 74), (3000, 140)]
    assert {hit.fingerprint for hit in hits} == {fingerprint(keys[5]), fingerprint(keys[2999]), fingerprint("+628123456789")}


def test_real_dagster_run_leaves_no_subscriber_values(tmp_path):
    home = tmp_path / "home"
    settings = get_settings(home)
    settings.ensure_dirs()
    keys = [KEY] + [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(30)]
    ingest_like(settings, "drop-old", OLD_WINDOW, keys[:16])
    ingest_like(settings, "drop-new", NEW_WINDOW, keys[16:])
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        result = dg.materialize(
            [retention, audit_log_checkpoint],
            resources={"crowd": CrowdPlatform(home=str(home))},
            instance=instance,
            run_config={"ops": {"retention": {"config": {"as_of": (NEW_WINDOW + timedelta(hours=1)).isoformat()}}}},
        )
        assert result.success
        metadata = result.asset_materializations_for_node("retention")[0].metadata
        assert metadata["objects_deleted"].value == 2
        assert (settings.witness / "checkpoints.jsonl").exists()
    with connect(settings.warehouse_path, read_only=True) as con:
        assert con.execute("SELECT status FROM drops WHERE drop_id = 'drop-old'").fetchone()[0] == "deleted"
    # Dagster storage (SQLite event log, runs, compute logs) and everything the platform wrote
    # except the still-retained drop-new files: no subscriber key of either drop.
    retained = {p for p in home.rglob("*") if "drop-new" in p.name} | set(settings.raw.iterdir())
    scanned = [dagster_home, *(p for p in home.rglob("*") if p.is_file() and p not in retained)]
    assert list(dagster_home.rglob("*.db")), "the run must have written SQLite storage to scan"
    assert scan_for_subscriber_values(scanned, keys) == []


def test_governance_definitions_load():
    definitions = dg.Definitions.merge(governance_defs, dg.Definitions(resources={"crowd": CrowdPlatform()}))
    repository = definitions.get_repository_def()
    assert {s.name for s in repository.schedule_defs} == {"daily_retention_schedule", "daily_audit_checkpoint"}
    schedule = repository.get_schedule_def("daily_retention_schedule")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
