"""Production-shaped runs: the Dagster instance on PostgreSQL, and several runs at once with
the multiprocess executor, compared with a serial run of the same drops.

PostgreSQL comes from .ci/run (deploy/start-postgres.sh, loopback only): CROWD_TEST_PG_DSN.
"""

from __future__ import annotations

import os
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from crowd_platform.runner.orchestration import process_pending
from crowd_platform.common.partitions import range_tags
from crowd_platform.common.settings import get_settings
from crowd_platform.simulator import simulate

PG_DSN = os.environ.get("CROWD_TEST_PG_DSN")
DAY1, DAY2 = date(2020, 3, 23), date(2020, 3, 24)
HOURS = (3, 5)  # two UTC hours a day: 8 windows


def _simulate(home: Path, days: int = 1, faults: frozenset[str] = frozenset()) -> dict:
    get_settings(home).ensure_dirs()
    return simulate(home, start=DAY1, days=days, subscribers=1500, seed=11, hours=HOURS, gatherings=[], faults=faults)


def _rows(home: Path, sql: str) -> list[tuple]:
    connection = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


DROPS_SQL = "SELECT operator, feed, window_start, delivery, sha256, status FROM drops ORDER BY ALL"
DENSITY_SQL = (
    "SELECT window_start, level, district_code, round(people_estimate, 6) FROM district_density ORDER BY ALL"
)
PRESENCE_SQL = "SELECT window_start, operator, place_level, place_id, subscribers FROM bts_presence ORDER BY ALL"


@pytest.fixture
def pg_instance(tmp_path):
    if not PG_DSN:
        if os.environ.get("CI"):
            pytest.fail("CROWD_TEST_PG_DSN is not set: .ci/run must start PostgreSQL")
        pytest.skip("no PostgreSQL (run deploy/start-postgres.sh)")
    import psycopg2

    database = f"crowd_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_DSN)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {database}")
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    config = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "dagster.yaml").read_text())
    base, _, _ = PG_DSN.rpartition("/")
    # psycopg2 explicitly: see the scheme note in deploy/dagster.yaml
    url = f"{base}/{database}".replace("postgresql://", "postgresql+psycopg2://", 1)
    config["storage"] = {"postgres": {"postgres_url": url}}
    config.pop("run_coordinator", None)  # runs are executed directly by the test, not by a daemon
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        yield instance
    finally:
        instance.dispose()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()


@pytest.mark.postgres
def test_pipeline_on_a_postgres_instance(tmp_path, pg_instance, monkeypatch):
    home = tmp_path / "crowd"
    monkeypatch.setenv("CROWD_HOME", str(home))
    simulated = _simulate(home)
    summary = process_pending(get_settings(home), pg_instance, purpose="test-pg", actor="pytest", progress=lambda _: None)
    assert summary.ok, summary.failed_runs
    runs = pg_instance.get_runs()
    assert runs and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    assert {run.tags.get("crowd/purpose") for run in runs} == {"test-pg"}
    # The event log lives in PostgreSQL: materializations of the window assets are there.
    materialized = pg_instance.get_latest_materialization_event(dg.AssetKey("district_density"))
    assert materialized is not None
    accepted = _rows(home, "SELECT count(*) FROM drops WHERE feed = 'events' AND status = 'accepted'")[0][0]
    assert accepted == sum(simulated["drops"].values())


@pytest.mark.postgres
@pytest.mark.slow  # each multiprocess run spawns a process per step (~45 s of CPU per run)
def test_concurrent_runs_equal_a_serial_run(tmp_path, monkeypatch, pg_instance):
    """Five operators' drops of day 2 land at once, with a duplicate and a late drop mixed in,
    while a backfill of day 1 runs: each run in its own OS process with the multiprocess
    executor, all against one PostgreSQL Dagster instance and one DuckDB warehouse, with the
    storage root (landing, raw, lake) in an S3 bucket on a loopback server. The reference is a
    serial run of the same drops on local disk."""
    pytest.importorskip("moto.server")
    from crowd_platform_tests.support.s3 import moto_bucket

    faults = frozenset({"duplicate", "late"})
    serial_home, parallel_home = tmp_path / "serial", tmp_path / "parallel"
    _simulate(serial_home, days=2, faults=faults)

    # Reference: everything one after the other, on local disk.
    monkeypatch.setenv("CROWD_HOME", str(serial_home))
    with dg.instance_for_test() as instance:
        summary = process_pending(get_settings(serial_home), instance, purpose="serial", progress=lambda _: None)
        assert summary.ok, summary.failed_runs

    with moto_bucket("crowd-concurrency") as endpoint:
        _concurrent_runs_on_the_bucket(monkeypatch, pg_instance, serial_home, parallel_home, faults, endpoint)


def _concurrent_runs_on_the_bucket(monkeypatch, pg_instance, serial_home: Path, parallel_home: Path,
                                   faults: frozenset[str], endpoint: str) -> None:
    import json
    import subprocess
    import sys

    import s3fs

    storage_url = "s3://crowd-concurrency/crowd"
    monkeypatch.setenv("CROWD_HOME", str(parallel_home))
    monkeypatch.setenv("CROWD_STORAGE_URL", storage_url)
    _simulate(parallel_home, days=2, faults=faults)  # the drops land in the bucket
    bucket = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    assert [key for key in bucket.find("crowd-concurrency/crowd/landing") if not key.endswith(".manifest.json")]

    # Concurrent: geography first (cells must be known), then day 1 as one backfill run while
    # each window of day 2 is its own run, all started together.
    from crowd_platform.definitions import defs

    first_window = f"{DAY1:%Y-%m-%d}-{HOURS[0]:02d}:00"
    geography = defs.resolve_job_def("geography_job").execute_in_process(instance=pg_instance, partition_key=first_window)
    assert geography.success
    # Three windows of day 2 as separate runs (the drops of all five operators, a duplicate and
    # a late drop among them), the rest of day 2 and all of day 1 as two backfill runs.
    day2 = f"{DAY2:%Y-%m-%d}"
    day2_windows = [f"{day2}-{HOURS[0]:02d}:{minute:02d}" for minute in (0, 15, 30)]
    launches = [range_tags(first_window, f"{DAY1:%Y-%m-%d}-{HOURS[1] - 1:02d}:45")]
    launches += [{"dagster/partition": window} for window in day2_windows]
    launches += [range_tags(f"{day2}-{HOURS[0]:02d}:45", f"{day2}-{HOURS[1] - 1:02d}:45")]
    env = {**os.environ, "CROWD_HOME": str(parallel_home), "DAGSTER_HOME": pg_instance.root_directory,
           "CROWD_STORAGE_URL": storage_url}  # and the AWS_* of the loopback server, set by moto_bucket
    worker = Path(__file__).parents[1] / "support" / "concurrent_worker.py"
    processes = [subprocess.Popen([sys.executable, str(worker), json.dumps(tags)], env=env, cwd=Path(__file__).parents[2],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for tags in launches]
    # A hang guard, not a speed check: five multiprocess runs share 2 cores with the other xdist
    # worker (crash tests, the demo test); 600 s was exceeded once under a parallel benchmark.
    outputs = [process.communicate(timeout=1500)[0].decode(errors="replace") for process in processes]
    failed = [output[-1500:] for process, output in zip(processes, outputs) if process.returncode != 0]
    assert not failed, failed[0]

    runs = pg_instance.get_runs(filters=dg.RunsFilter(tags={"crowd/purpose": "concurrency-test"}))
    assert len(runs) == len(launches) and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    assert _rows(parallel_home, DROPS_SQL) == _rows(serial_home, DROPS_SQL)
    statuses = {row[0] for row in _rows(parallel_home, "SELECT DISTINCT status FROM drops")}
    assert "duplicate" in statuses and "quarantined" not in statuses
    assert _rows(parallel_home, PRESENCE_SQL) == _rows(serial_home, PRESENCE_SQL)
    assert _rows(parallel_home, DENSITY_SQL) == _rows(serial_home, DENSITY_SQL)
    # Outside the warehouse pool (issue 17): operator_drops and bts_presence compute away from the
    # warehouse, so steps of different runs overlap instead of queueing for the one slot.
    intervals = [(stat.start_time, stat.end_time) for run in runs for stat in pg_instance.get_run_step_stats(run.run_id)
                 if stat.step_key in ("operator_drops", "bts_presence") and stat.start_time and stat.end_time]
    overlapping = sum(1 for i, (start, end) in enumerate(intervals) for other_start, other_end in intervals[i + 1:]
                      if start < other_end and other_start < end)
    assert len(intervals) == 2 * len(launches) and overlapping >= 1, intervals
    # No drop lost or taken twice: landing is empty, and every stored drop has exactly one raw
    # copy and (accepted ones) one lake file in the bucket.
    assert [key for key in bucket.find("crowd-concurrency/crowd/landing")] == []
    stored = _rows(parallel_home, "SELECT raw_path, lake_path, status FROM drops")
    raw_keys = {key.removeprefix("crowd-concurrency/crowd/") for key in bucket.find("crowd-concurrency/crowd/raw")
                if not key.endswith(".manifest.json")}
    lake_keys = {key.removeprefix("crowd-concurrency/crowd/") for key in bucket.find("crowd-concurrency/crowd/lake")}
    accepted = [(raw, lake) for raw, lake, status in stored if status == "accepted"]
    assert accepted and all(raw in raw_keys and lake in lake_keys for raw, lake in accepted)
    assert raw_keys == {raw for raw, _, _ in stored if raw}, "a raw copy no drop row names, or one missing"
    assert lake_keys <= {lake for _, lake, _ in stored if lake}, "a lake file no drop row names"
