"""Recovery after a crash: nothing is lost, nothing is done twice.

A killed run can leave (1) drops recorded as `received` whose landing copy is gone but which
were never validated, published or quarantined, and (2) Dagster runs that never finished.
`recover` re-lands such drops from their immutable raw/ copy (bytes and manifest as
received: the normal path then redoes them idempotently) and re-executes each interrupted
run once, with the same partitions and assets. Writes elsewhere are already safe to redo:
warehouse changes are single transactions (a kill rolls them back), files move by atomic
rename, outbox files are written only if absent and HTTP delivery carries an idempotency key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import dagster as dg
import duckdb

from crowd_platform.common import audit
from crowd_platform.common import storage
from crowd_platform.ingestion.drops import copy_atomic
from crowd_platform.ingestion.manifest import MANIFEST_SUFFIX
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import fetch_dicts

log = logging.getLogger(__name__)

# Jobs whose steps are idempotent per partition (DELETE + INSERT, drops re-landed): an
# interrupted run is run again with its partition tags.
RECOVERABLE_JOBS = ("window_job", "daily_job", "geography_job", "indicators_job", "retention_job")
RESUMES_TAG = "crowd/resumes"
UNFINISHED = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED)


@dataclass
class Recovery:
    relanded_drops: list[str] = field(default_factory=list)
    interrupted_runs: list[dg.DagsterRun] = field(default_factory=list)


def reland_interrupted_drops(settings: Settings, connection: duckdb.DuckDBPyConnection, active_run_ids: set[str]) -> list[str]:
    """Put drops left `received` by a dead run back into landing (data first, manifest last)."""
    relanded = []
    for drop in fetch_dicts(connection, "SELECT drop_id, operator, file_name, manifest_name, raw_path, run_id FROM drops "
                                        "WHERE status = 'received' ORDER BY received_at"):
        if drop["run_id"] in active_run_ids or not drop["raw_path"]:
            continue
        raw = settings.resolve(drop["raw_path"])
        raw_manifest = raw.with_name(raw.name + MANIFEST_SUFFIX)
        if not raw.exists() or not raw_manifest.exists():
            log.warning("drop %s is unfinished but its raw copy is gone; left for an operator", drop["drop_id"])
            continue
        folder = settings.landing / drop["operator"]
        storage.ensure_dir(folder)
        # Data first, manifest last: the sensor sees a complete drop or none.
        copy_atomic(raw, folder / drop["file_name"])
        copy_atomic(raw_manifest, folder / drop["manifest_name"])
        audit.append(connection, "drop_relanded", purpose=settings.purpose, object_kind="drop", object_id=drop["drop_id"],
                     details={"interrupted_run": drop["run_id"]})
        relanded.append(drop["drop_id"])
    return relanded


def interrupted_runs(instance: dg.DagsterInstance, mark_failed: bool) -> list[dg.DagsterRun]:
    """Runs of our jobs that died (never finished, or failed) and were not resumed yet.

    With ``mark_failed`` (the CLI, where no other run can be in flight), runs stuck in a
    started state are first marked failed: their process is gone.
    """
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=None), limit=500)
    resumed = {run.tags.get(RESUMES_TAG) for run in runs if run.tags.get(RESUMES_TAG)}
    found = []
    for run in runs:
        if run.job_name not in RECOVERABLE_JOBS or run.run_id in resumed or run.tags.get(RESUMES_TAG):
            continue
        if run.status in UNFINISHED and mark_failed:
            instance.report_run_failed(run, message="process died before the run finished; resumed by crowd-platform run")
            # A killed run never gives back its pool slot (duckdb_warehouse, limit 1): without
            # this, every later run would wait for it forever.
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            found.append(run)
        elif run.status == dg.DagsterRunStatus.FAILURE:
            found.append(run)
    return sorted(found, key=lambda run: instance.get_run_stats(run.run_id).launch_time or 0)
