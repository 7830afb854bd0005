"""``landing_sensor``: turns complete drops in landing/ into window runs.

Never opens the warehouse (a run holds its write lock): state is the JSON cursor plus the file
system. Each tick lists landing/*/ with os.scandir (cheap even with 10 000 files; on an object
store a paged ListObjectsV2 through fsspec), reads at
most ``MAX_MANIFESTS_PER_TICK`` manifests it has not requested yet, groups them by window and
requests one run per window (cells first, via geography_job). A requested manifest is
remembered in the cursor until its file leaves landing; if it is still there after
``RETRY_AFTER_SECONDS`` (failed run) it is requested again under a new run key.

A page ends wherever ``MAX_MANIFESTS_PER_TICK`` falls, often inside a UTC day. The daemon runs
each request (one window) on its own, so that costs nothing there; ``crowd-platform run`` merges
requests into day runs and holds a day's requests until a later day shows up
(runner/orchestration.py), so a backlog's days are never cut into odd pieces either.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import defaultdict

import dagster as dg

from crowd_platform.jobs import geography_job, window_job
from crowd_platform.ingestion.jobs import quarantine_unroutable_job, unroutable_run_config
from crowd_platform.common import storage
from crowd_platform.ingestion.landing import entry_key, scan_landing
from crowd_platform.common.partitions import window_key
from crowd_platform.common.settings import get_settings

MAX_MANIFESTS_PER_TICK = 500
RETRY_AFTER_SECONDS = 3600
WINDOW_JOB = window_job.name
GEOGRAPHY_JOB = geography_job.name


def _content_hash(settings, entry) -> str:
    digest = hashlib.sha256()
    folder = settings.landing / entry.operator_dir
    for name in sorted(entry.names):
        path = folder / name
        digest.update(os.fsencode(name))
        try:
            digest.update(os.readlink(path).encode("utf-8", "surrogateescape") if storage.is_symlink(path) else path.read_bytes())
        except OSError:
            pass
    return digest.hexdigest()


def evaluate_landing(cursor: str | None, now: float | None = None, home: str | None = None) -> tuple[list[dg.RunRequest], str, dict]:
    """One tick: (run requests, new cursor, stats). Pure file-system work."""
    settings = get_settings(home)
    now = time.time() if now is None else now
    state = json.loads(cursor) if cursor else {}
    inflight: dict[str, float] = state.get("inflight", {})
    fresh = {key for key, requested in inflight.items() if now - requested < RETRY_AFTER_SECONDS}
    scan = scan_landing(
        settings.landing, settings.contracts_dir, window_minutes=settings.window_minutes, skip_keys=fresh,
        max_manifests=MAX_MANIFESTS_PER_TICK, partition_range=(settings.emergency_start, settings.emergency_end),
    )
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for drop in scan.routable:
        job = GEOGRAPHY_JOB if drop.manifest.feed == "cells" else WINDOW_JOB
        groups[(job, window_key(drop.manifest.window_start))].append(drop)
    requests: list[dg.RunRequest] = []
    # Cells first: a window's events are checked against the registry its cell lists build.
    for (job, window), drops in sorted(groups.items(), key=lambda item: (item[0][0] != GEOGRAPHY_JOB, item[0][1])):
        run_key = "drops-" + hashlib.sha256("".join(sorted(drop.manifest_sha256 for drop in drops)).encode()).hexdigest()
        if any(inflight.get(_key(drop)) for drop in drops):
            run_key += f"-retry{int(now)}"
        requests.append(dg.RunRequest(job_name=job, partition_key=window, run_key=run_key,
                                      tags={"crowd/drops": str(len(drops)), "crowd/trigger": "landing_sensor"}))
        for drop in drops:
            inflight[_key(drop)] = now
    if scan.unroutable:
        run_key = "unroutable-" + hashlib.sha256("".join(sorted(_content_hash(settings, entry) for entry in scan.unroutable)).encode()).hexdigest()
        if any(inflight.get(_entry_key_safe(settings, entry.operator_dir, name)) for entry in scan.unroutable for name in entry.names):
            run_key += f"-retry{int(now)}"  # an earlier run did not take them: ask again
        requests.append(dg.RunRequest(job_name=quarantine_unroutable_job.name, run_config=unroutable_run_config(scan.unroutable), run_key=run_key,
                                      tags={"crowd/unroutable": str(len(scan.unroutable))}))
        for entry in scan.unroutable:
            for name in entry.names:
                path = settings.landing / entry.operator_dir / name
                try:
                    inflight[_entry_key(entry.operator_dir, name, path)] = now
                except OSError:
                    pass
    # Forget what left landing (processed): the cursor stays as small as the backlog.
    inflight = {key: value for key, value in inflight.items() if key in scan.keys_present}
    stats = {"manifests_seen": scan.manifests_seen, "manifests_read": scan.manifests_read, "runs": len(requests),
             "unroutable": len(scan.unroutable)}
    return requests, json.dumps({"inflight": inflight}, separators=(",", ":")), stats


def _key(drop) -> str:
    return drop.key


def _entry_key(operator_dir: str, name: str, path) -> str:
    return entry_key(operator_dir, name, storage.mtime_ns(path))


def _entry_key_safe(settings, operator_dir: str, name: str) -> str | None:
    try:
        return _entry_key(operator_dir, name, settings.landing / operator_dir / name)
    except OSError:
        return None


def _landing_sensor_fn(context: dg.SensorEvaluationContext):
    started = time.monotonic()
    requests, cursor, stats = evaluate_landing(context.cursor)
    context.update_cursor(cursor)
    # Debug: kept in the tick's log (daemon, UI), not echoed on the console of `crowd-platform run`.
    context.log.debug(f"landing scan: {stats} in {time.monotonic() - started:.2f}s")
    if not requests:
        return dg.SkipReason(f"no new complete drops ({stats['manifests_seen']} manifests waiting or in flight)")
    return requests


landing_sensor = dg.SensorDefinition(
    name="landing_sensor",
    evaluation_fn=_landing_sensor_fn,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    # window_job / geography_job are the platform's cross-domain jobs (selected by asset key,
    # so importing them pulls in no other domain's code).
    jobs=[geography_job, window_job, quarantine_unroutable_job],
    description="New complete drops in landing/ -> one run per window (cells first); unroutable entries -> quarantine.",
)
