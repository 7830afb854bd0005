"""Object storage: the storage root as an S3 bucket, end to end against a real S3 server.

moto runs in server mode on 127.0.0.1 (a real HTTP S3 endpoint, reached through s3fs and
botocore exactly as a production bucket would be). The same small simulation runs once with
the storage root in the bucket and once on local disk; the pipeline (real Dagster instance,
real DuckDB) must produce the same densities, keep raw copies, lake Parquet, quarantine
reports and outbox requests as objects, and retention must delete the personal objects with
certificates.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

moto_server = pytest.importorskip("moto.server")

from crowd_platform.common import storage
from crowd_platform_tests.support.pipeline import SAMPLED_RULES  # noqa: E402
from crowd_platform_tests.support.s3 import moto_bucket, set_env  # noqa: E402

pytestmark = pytest.mark.xdist_group("object_storage")

BUCKET = "crowd-platform-test"
# One hour of two operators: 4 windows, cell lists, a duplicate and a raw-MSISDN drop (quarantined).
SIM = dict(start=date(2020, 3, 27), days=1, subscribers=800, seed=11, hours=(4, 5), operators=["telkomsel", "xl"],
           gatherings=[], faults=frozenset({"msisdn", "duplicate"}))
_set_env = set_env


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free loopback port, with one bucket."""
    with moto_bucket(BUCKET) as endpoint:
        yield endpoint


def _s3fs():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


# ---------------------------------------------------------------- storage layer (local and S3)
@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return storage.storage_root(str(tmp_path / "store"))
    request.getfixturevalue("s3_endpoint")
    return storage.storage_root(f"s3://{BUCKET}/unit-{tmp_path.name}")


def test_write_copy_move_list_and_remove(root):
    data = root / "landing" / "op" / "drop.csv"
    storage.write_bytes(data, b"a,b\n1,2\n")
    assert data.is_file() and data.read_bytes() == b"a,b\n1,2\n"
    copy = root / "raw" / "copy.csv"
    storage.copy_file(data, copy)
    assert storage.sha256_and_size(copy) == (hashlib.sha256(b"a,b\n1,2\n").hexdigest(), 8)
    moved = root / "quarantine" / "d1" / "drop.csv"
    storage.move(data, moved)
    assert not data.exists() and moved.read_bytes() == b"a,b\n1,2\n"
    storage.write_bytes(root / "landing" / "op" / "other.json", b"{}")
    entries = {entry.name: entry for entry in storage.scandir(root / "landing")}
    assert list(entries) == ["op"] and entries["op"].is_dir(follow_symlinks=False)
    files = {entry.name: entry for entry in storage.scandir(root / "landing" / "op")}
    assert list(files) == ["other.json"] and not files["other.json"].is_symlink()
    assert storage.entry_bytes(files["other.json"]) == b"{}"
    # The key of a landing entry (listing time) equals the one read back for one object.
    assert files["other.json"].stat(follow_symlinks=False).st_mtime_ns == storage.mtime_ns(root / "landing" / "op" / "other.json")
    if not storage.is_local(root):
        # An operator "folder" whose last object was just taken is simply empty.
        assert storage.scandir(root / "absent") == []
    storage.remove_tree(root / "quarantine" / "d1")
    assert not moved.exists() and not (root / "quarantine" / "d1").exists()
    storage.remove(root / "never-there")  # absent is fine


def test_copy_between_local_disk_and_store(root, tmp_path):
    local = tmp_path / "scratch" / "x.parquet"
    local.parent.mkdir()
    duckdb.sql(f"COPY (SELECT range AS n FROM range(1000)) TO '{local}'")
    target = root / "lake" / "x.parquet"
    storage.copy_file(local, target)
    back = tmp_path / "back" / "x.parquet"
    assert storage.copy_hashing(target, back) == hashlib.sha256(local.read_bytes()).hexdigest()
    # DuckDB reads the object through the registered fsspec filesystem (no httpfs download).
    with duckdb.connect() as con:
        path = storage.duckdb_path(con, target)
        assert con.execute(f"SELECT count(*), sum(n) FROM read_parquet('{path}')").fetchone() == (1000, 499500)
        assert storage.duckdb_path(con, target) == path  # registered once per connection
    assert pq.ParquetFile(storage.open_binary(target)).metadata.num_rows == 1000


def test_outbox_create_is_exclusive(root):
    target = root / "outbox" / "op" / "r1.json"
    if storage.is_local(target):
        from crowd_platform.alerts.delivery import write_outbox_file

        assert write_outbox_file(target, {"a": 1}) and not write_outbox_file(target, {"a": 2})
    else:
        assert storage.create_exclusive(target, b'{"a": 1}')
        assert not storage.create_exclusive(target, b'{"a": 2}')
        # Even when the existence check is raced, the conditional PUT refuses (If-None-Match: *).
        with pytest.raises(OSError):
            target.fs.pipe_file(target.path, b'{"a": 3}', mode="create")
    assert json.loads(target.read_text()) == {"a": 1}


def test_listing_pages_past_one_thousand_objects(s3_endpoint):
    fs = _s3fs()
    prefix = f"{BUCKET}/paging/landing/op"
    fs.pipe({f"{prefix}/f{number:04d}.csv": b"x" for number in range(1005)})
    entries = storage.scandir(storage.storage_root(f"s3://{BUCKET}/paging/landing/op"))
    assert len(entries) == 1005 and all(entry.is_file() for entry in entries)


def test_settings_default_root_is_crowd_home(tmp_path, monkeypatch):
    from crowd_platform.common.settings import get_settings

    monkeypatch.delenv("CROWD_STORAGE_URL", raising=False)
    settings = get_settings(tmp_path)
    assert settings.root == tmp_path.resolve() and settings.landing == tmp_path.resolve() / "landing"
    assert not settings.is_remote
    monkeypatch.setenv("CROWD_STORAGE_URL", f"s3://{BUCKET}/somewhere")
    remote = get_settings(tmp_path)
    assert remote.is_remote and str(remote.raw) == f"s3://{BUCKET}/somewhere/raw"
    assert remote.staging == tmp_path.resolve() / "staging" and remote.warehouse_path.parent == tmp_path.resolve()
    assert remote.stored(remote.raw / "ab.csv") == "raw/ab.csv"
    assert str(remote.resolve("raw/ab.csv")) == f"s3://{BUCKET}/somewhere/raw/ab.csv"
    assert "secret" not in repr(remote)


# ---------------------------------------------------------------- the pipeline on a bucket
def _run_pipeline(home: Path, storage_url: str | None) -> dict:
    from crowd_platform.runner.instance import get_instance
    from crowd_platform.runner.orchestration import process_pending
    from crowd_platform.common.settings import get_settings
    from crowd_platform.simulator import simulate

    previous = _set_env({"CROWD_HOME": str(home), "DAGSTER_HOME": str(home / "dagster_home"),
                         "CROWD_ALERT_RULES": SAMPLED_RULES, "CROWD_STORAGE_URL": storage_url})
    try:
        settings = get_settings(home)
        settings.ensure_dirs()
        started = time.monotonic()
        simulated = simulate(home, **SIM)
        summary = process_pending(settings, get_instance(settings), purpose="test-object-storage", actor="pytest",
                                  progress=lambda _: None)
        return {"settings": settings, "simulated": simulated, "summary": summary, "seconds": time.monotonic() - started}
    finally:
        _set_env(previous)


def _rows(settings, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def runs(s3_endpoint, tmp_path_factory):
    remote = _run_pipeline(tmp_path_factory.mktemp("s3_home"), f"s3://{BUCKET}/crowd")
    local = _run_pipeline(tmp_path_factory.mktemp("local_home"), None)
    return {"s3": remote, "local": local}


def _bucket_keys(prefix: str) -> list[str]:
    fs = _s3fs()
    root = f"{BUCKET}/crowd/{prefix}"
    return sorted(key[len(f"{BUCKET}/crowd/"):] for key in fs.find(root)) if fs.exists(root) else []


def test_pipeline_on_s3_succeeds_and_keeps_nothing_on_local_disk(runs):
    remote = runs["s3"]
    assert remote["summary"].ok, remote["summary"]
    home = remote["settings"].home
    for area in ("landing", "raw", "quarantine", "lake", "outbox"):
        local_files = [p for p in (home / area).rglob("*") if p.is_file()] if (home / area).exists() else []
        assert local_files == [], f"{area} written to local disk"
    assert _bucket_keys("landing") == [], "every landing object was taken"
    statuses = dict(_rows(remote["settings"], "SELECT status, count(*) FROM drops GROUP BY ALL"))
    assert statuses.get("accepted", 0) > 0 and statuses.get("quarantined", 0) >= 1 and statuses.get("duplicate", 0) >= 1


def test_raw_copies_and_lake_parquet_are_objects_with_the_right_bytes(runs):
    settings = runs["s3"]["settings"]
    fs = _s3fs()
    accepted = _rows(settings, "SELECT drop_id, sha256, raw_path, lake_path, rows_loaded FROM drops WHERE status = 'accepted'")
    assert accepted
    local = runs["local"]["settings"]
    local_lake = dict(_rows(local, "SELECT drop_id, lake_path FROM drops WHERE status = 'accepted'"))
    same_bytes = 0
    for drop_id, sha, raw_path, lake_path, rows in accepted:
        assert raw_path.startswith("raw/") and lake_path.startswith("lake/"), "recorded relative to the storage root"
        raw_key = f"{BUCKET}/crowd/{raw_path}"
        assert hashlib.sha256(fs.cat_file(raw_key)).hexdigest() == sha
        assert fs.exists(raw_key + ".manifest.json")
        lake_bytes = fs.cat_file(f"{BUCKET}/crowd/{lake_path}")
        assert lake_bytes[:4] == b"PAR1" and lake_bytes[-4:] == b"PAR1"
        with fs.open(f"{BUCKET}/crowd/{lake_path}", "rb") as handle:
            assert pq.ParquetFile(handle).metadata.num_rows == rows
        # The same drop processed on a local root wrote the very same Parquet bytes.
        if drop_id in local_lake:
            local_file = local.resolve(local_lake[drop_id])
            assert hashlib.sha256(lake_bytes).hexdigest() == hashlib.sha256(local_file.read_bytes()).hexdigest()
            same_bytes += 1
    assert same_bytes == len(accepted)


def test_broken_drop_is_quarantined_in_the_bucket_with_its_report(runs):
    settings = runs["s3"]["settings"]
    fs = _s3fs()
    quarantined = _rows(settings, "SELECT drop_id, quarantine_path, file_name, sha256, raw_path FROM drops WHERE status = 'quarantined'")
    assert quarantined
    for drop_id, quarantine_path, file_name, sha, raw_path in quarantined:
        assert raw_path is None and quarantine_path == f"quarantine/{drop_id}"
        report = json.loads(fs.cat_file(f"{BUCKET}/crowd/{quarantine_path}/report.json"))
        assert report["drop_id"] == drop_id and report["failed_rules"]
        if "raw_msisdn" in report:  # never stored: cut down to its report on arrival, bytes deleted
            assert not fs.exists(f"{BUCKET}/crowd/{quarantine_path}/{file_name}")
            continue
        assert hashlib.sha256(fs.cat_file(f"{BUCKET}/crowd/{quarantine_path}/{file_name}")).hexdigest() == sha
        assert not fs.exists(f"{BUCKET}/crowd/raw/{sha}.csv") and not fs.exists(f"{BUCKET}/crowd/raw/{sha}.csv.gz")
    assert not any(settings.staging.iterdir()) if settings.staging.exists() else True


def test_densities_equal_those_of_a_local_root(runs):
    sql = ("SELECT strftime(window_start, '%Y-%m-%dT%H:%M'), level, district_code, round(subscribers, 6), "
           "round(people_estimate, 3), operators_reporting, list_sort(drop_ids) FROM district_density ORDER BY ALL")
    on_s3, on_disk = _rows(runs["s3"]["settings"], sql), _rows(runs["local"]["settings"], sql)
    assert on_s3 and on_s3 == on_disk
    presence = "SELECT strftime(window_start, '%Y-%m-%dT%H:%M'), operator, place_level, place_id, subscribers FROM bts_presence ORDER BY ALL"
    assert _rows(runs["s3"]["settings"], presence) == _rows(runs["local"]["settings"], presence)


def test_outbox_requests_are_objects_in_the_bucket(runs):
    from crowd_platform.alerts.delivery import write_outbox_file

    settings = runs["s3"]["settings"]
    fs = _s3fs()
    requests = _rows(settings, "SELECT request_id, operator, outbox_path FROM broadcast_requests ORDER BY request_id")
    local_requests = _rows(runs["local"]["settings"], "SELECT request_id FROM broadcast_requests ORDER BY request_id")
    assert [row[0] for row in requests] == [row[0] for row in local_requests]
    # One hour has no baseline, hence no alert: write one request the way broadcast_requests does.
    path = settings.outbox / "telkomsel" / "req-test-0001.json"
    assert write_outbox_file(path, {"request_id": "req-test-0001", "operator": "telkomsel"})
    assert not write_outbox_file(path, {"request_id": "req-test-0001", "operator": "other"})  # written once
    assert str(path) == f"s3://{BUCKET}/crowd/outbox/telkomsel/req-test-0001.json"
    assert settings.resolve(str(path)).exists()  # how the outbox check finds a recorded outbox_path
    expected = [(f"outbox/{operator}/{request_id}.json") for request_id, operator, _ in requests]
    assert _bucket_keys("outbox") == sorted(expected + ["outbox/telkomsel/req-test-0001.json"])
    for request_id, operator, outbox_path in requests:
        assert outbox_path == f"s3://{BUCKET}/crowd/outbox/{operator}/{request_id}.json"
        assert json.loads(fs.cat_file(outbox_path))["request_id"] == request_id
    assert json.loads(fs.cat_file(f"{BUCKET}/crowd/outbox/telkomsel/req-test-0001.json"))["operator"] == "telkomsel"


def test_retention_deletes_personal_objects_from_the_bucket_with_certificates(runs):
    from crowd_platform.governance.retention import apply_retention

    remote = runs["s3"]
    settings = remote["settings"]
    before_raw, before_lake = _bucket_keys("raw"), _bucket_keys("lake/events")
    before_quarantine = _bucket_keys("quarantine")
    assert before_raw and before_lake and before_quarantine
    previous = _set_env({"CROWD_STORAGE_URL": f"s3://{BUCKET}/crowd"})
    try:
        outcome = apply_retention(settings, as_of=datetime(2021, 1, 1, tzinfo=timezone.utc), actor="pytest")
    finally:
        _set_env(previous)
    assert not outcome.failed
    # Every events drop's raw copy and lake file is gone; cell lists are not personal data.
    remaining_raw = _bucket_keys("raw")
    cells_raw = {f"{path}" for (path,) in _rows(settings, "SELECT raw_path FROM drops WHERE feed = 'cells' AND raw_path IS NOT NULL")}
    assert {key for key in remaining_raw if not key.endswith(".manifest.json")} <= cells_raw
    assert _bucket_keys("lake/events") == [] and _bucket_keys("quarantine") == []
    certificates = _rows(settings, "SELECT object_kind, object_id, content_sha256, bytes, verification FROM deletion_certificates "
                                   "WHERE object_kind IN ('raw_drop', 'lake_partition', 'quarantine')")
    kinds = {kind for kind, *_ in certificates}
    assert kinds == {"raw_drop", "lake_partition", "quarantine"}
    assert all(verification.startswith("verified: absent") for *_, verification in certificates)
    assert all(sha and size for _, _, sha, size, _ in certificates)
    deleted = _rows(settings, "SELECT count(*) FROM drops WHERE status = 'deleted' AND feed = 'events'")[0][0]
    assert deleted == _rows(settings, "SELECT count(*) FROM drops WHERE feed = 'events' AND status <> 'duplicate'")[0][0]


def test_pipeline_on_the_bucket_costs_about_what_local_disk_costs(runs):
    # Measured on 2 busy shared cores: bucket 41 s, local disk 30 s (simulation included).
    # Generous bounds: a regression guard (e.g. a listing per object), not a benchmark.
    on_s3, on_disk = runs["s3"]["seconds"], runs["local"]["seconds"]
    print(f"simulate + pipeline: bucket {on_s3:.1f} s, local disk {on_disk:.1f} s")
    assert on_s3 < 120 and on_s3 < 2 * on_disk + 10, (on_s3, on_disk)


def test_sunset_proves_the_bucket_clean_too(runs):
    """Sunset's final scan walks the bucket prefix as well as CROWD_HOME: a value with a
    subscriber key's shape left in an object is reported with the object's address (never the
    value), and once it is gone the same proof passes. Last in the module: it purges the run."""
    from crowd_platform.governance.retention.purge import sunset

    settings = runs["s3"]["settings"]
    fs = _s3fs()
    stray = f"{BUCKET}/crowd/geo/stray-export.csv"
    fs.pipe_file(stray, ("subscriber_key\n" + hashlib.sha256(b"left behind").hexdigest() + "\n").encode())
    previous = _set_env({"CROWD_STORAGE_URL": f"s3://{BUCKET}/crowd"})
    try:
        dirty = sunset(settings, actor="pytest")
        assert not dirty.clean
        assert dirty.hex_hits == {f"s3://{stray}": 1}, dirty.hex_hits
        assert "left behind" not in "\n".join(dirty.lines()) and hashlib.sha256(b"left behind").hexdigest() not in "\n".join(dirty.lines())
        fs.rm_file(stray)
        clean = sunset(settings, actor="pytest")
    finally:
        _set_env(previous)
    assert clean.clean, clean.lines()
    assert _bucket_keys("raw") == [] and _bucket_keys("lake/events") == []
