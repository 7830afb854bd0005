"""Process whatever is pending in the landing area through Dagster.

`crowd-platform run` (and the demo) evaluate the real `landing_sensor` against the instance
and execute the runs it requests with the same job definitions the UI and the daemon use: no
second code path. Two things differ from the daemon, both for throughput on a backlog:
requests for consecutive windows of one day are merged into one range run (every window asset
has a single-run backfill policy), and each day's baseline is computed before its windows so
alerts can be evaluated in the same pass.
"""

from __future__ import annotations

import getpass
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg

from crowd_platform.common.partitions import DAY_KEY_FORMAT, parse_window_key, range_tags
from crowd_platform.common.settings import Settings, env

Progress = Callable[[str], None]
CONSOLE_LOG_LEVEL = env("CROWD_LOG_LEVEL") or "WARNING"


@dataclass
class RunSummary:
    runs: int = 0
    failed_runs: list[str] = field(default_factory=list)
    windows: set[str] = field(default_factory=set)
    days: set[str] = field(default_factory=set)
    local_days: set[str] = field(default_factory=set)  # mobility indicators computed (local dates)
    geography_runs: int = 0
    unroutable_runs: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed_runs


def run_tags(purpose: str, actor: str | None = None, trigger: str = "cli") -> dict[str, str]:
    """Every run carries who/what started it and why (docs/design.md section 4.5)."""
    return {
        "crowd/purpose": purpose,
        "crowd/actor": actor or env("CROWD_ACTOR") or f"user:{getpass.getuser()}",
        "crowd/trigger": trigger,
    }


def _definitions() -> dg.Definitions:
    from crowd_platform.definitions import defs

    return defs


def _execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    summary: RunSummary,
    progress: Progress,
    label: str,
    **kwargs,
) -> bool:
    return _execute_result(defs, instance, job_name, summary, progress, label, **kwargs).success


def _execute_result(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    summary: RunSummary,
    progress: Progress,
    label: str,
    **kwargs,
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(job_name)
    # The console shows our one-line progress; Dagster's step events stay in the event log
    # (and the UI) at full detail, only warnings and errors are echoed.
    run_config = dict(kwargs.pop("run_config", None) or {})
    run_config.setdefault("loggers", {"console": {"config": {"log_level": CONSOLE_LOG_LEVEL}}})
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config, **kwargs)
    summary.runs += 1
    if not result.success:
        summary.failed_runs.append(f"{job_name} {label} (run {result.run_id})")
        progress(f"  FAILED {job_name} {label}: see run {result.run_id} in the Dagster UI")
    return result


def _day_of(window_key: str) -> str:
    return parse_window_key(window_key).strftime(DAY_KEY_FORMAT)


def process_pending(
    settings: Settings,
    instance: dg.DagsterInstance,
    *,
    purpose: str | None = None,
    actor: str | None = None,
    progress: Progress = print,
    max_ticks: int = 10_000,
    with_presence_daily: bool = True,
) -> RunSummary:
    """Tick the landing sensor until it requests nothing more; run what it requests.

    The sensor pages through landing oldest first, and a page ends wherever its manifest limit
    falls, often inside a day. Requests are therefore held per UTC day and a day is run once a
    later day has shown up (or the sensor has nothing more): each day gets one baseline run, one
    window range run, never two or three pieces cut at odd windows. What is computed per local
    day (the daily presence roll-up and the mobility indicators) runs once at the end for every
    complete local day touched, in date order (flows read the day before).

    ``with_presence_daily=False`` leaves out those local-day runs (not on the alert path;
    evaluations and benchmarks that only need alerts skip their cost)."""
    from crowd_platform.runner.idle import run_mark

    with run_mark(settings) as mark:
        summary = _process_pending(settings, instance, purpose, actor, progress, max_ticks, with_presence_daily)
        mark["clean"] = summary.ok
    return summary


def _process_pending(settings: Settings, instance: dg.DagsterInstance, purpose: str | None, actor: str | None,
                     progress: Progress, max_ticks: int, with_presence_daily: bool) -> RunSummary:
    defs = _definitions()
    sensor_def = defs.resolve_sensor_def("landing_sensor")
    tags = run_tags(purpose or settings.purpose, actor)
    summary = RunSummary()
    recover(settings, instance, defs, tags, summary, progress)
    cursor: str | None = None
    held: dict[str, list[dg.RunRequest]] = defaultdict(list)  # UTC day -> its geography and window requests
    window_keys: list[str] = []
    for _tick in range(max_ticks):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        tick = sensor_def.evaluate_tick(context)
        cursor = tick.cursor if tick.cursor is not None else cursor
        requests = list(tick.run_requests or [])
        if not requests:
            break
        others = []
        for request in requests:
            if request.job_name in ("geography_job", "window_job", None) and request.partition_key:
                held[_day_of(request.partition_key)].append(request)
            else:
                others.append(request)
        if others:
            _run_requests(defs, instance, others, tags, summary, progress)
        # Days before the newest one seen are complete as far as this backlog goes: run them now.
        for day in sorted(held)[:-1]:
            window_keys += _run_requests(defs, instance, held.pop(day), tags, summary, progress)
    for day in sorted(held):
        window_keys += _run_requests(defs, instance, held.pop(day), tags, summary, progress)
    if with_presence_daily and window_keys:
        process_indicators(settings, defs, instance, local_days_of(settings, window_keys), tags, summary, progress)
    return summary


def _run_requests(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    requests: list[dg.RunRequest],
    tags: dict[str, str],
    summary: RunSummary,
    progress: Progress,
) -> list[str]:
    """Run a batch of sensor requests (unroutable, then cells, then windows day by day); return
    the window keys it ran."""
    by_job: dict[str, list[dg.RunRequest]] = defaultdict(list)
    for request in requests:
        by_job[request.job_name or "window_job"].append(request)

    # Unroutable drops are quarantined first: they never hold up routable ones.
    for request in by_job.pop("quarantine_unroutable_job", []):
        summary.unroutable_runs += 1
        progress("  quarantining unroutable drops")
        _execute(defs, instance, "quarantine_unroutable_job", summary, progress, "unroutable",
                 run_config=request.run_config, tags={**tags, **request.tags})

    # Cell lists before events: unknown-cell rules and apportionment need the registry.
    for request in sorted(by_job.pop("geography_job", []), key=lambda r: r.partition_key or ""):
        summary.geography_runs += 1
        progress(f"  geography: cell lists of {request.partition_key}")
        _execute(defs, instance, "geography_job", summary, progress, str(request.partition_key),
                 partition_key=request.partition_key, run_config=request.run_config, tags={**tags, **request.tags})

    windows_by_day: dict[str, list[str]] = defaultdict(list)
    for request in by_job.pop("window_job", []):
        if request.partition_key:
            windows_by_day[_day_of(request.partition_key)].append(request.partition_key)
    for day in sorted(windows_by_day):
        process_day(defs, instance, day, sorted(set(windows_by_day[day])), tags, summary, progress)
    window_keys = [key for keys in windows_by_day.values() for key in keys]

    for job_name, leftover in by_job.items():
        for request in leftover:
            _execute(defs, instance, job_name, summary, progress, str(request.partition_key),
                     partition_key=request.partition_key, run_config=request.run_config,
                     tags={**tags, **request.tags})
    return window_keys


def recover(
    settings: Settings,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    tags: dict[str, str],
    summary: RunSummary,
    progress: Progress,
) -> None:
    """Finish what a crash left: re-land unfinished drops, re-execute interrupted runs once.

    The CLI is the only runner of its embedded instance, so a run still marked as started is
    a dead one (see runner/recovery.py).
    """
    from crowd_platform.common import warehouse
    from crowd_platform.runner.recovery import RESUMES_TAG, interrupted_runs, reland_interrupted_drops

    dead = interrupted_runs(instance, mark_failed=True)
    if settings.warehouse_path.exists():
        with warehouse.connect(settings.warehouse_path) as connection:
            relanded = reland_interrupted_drops(settings, connection, active_run_ids=set())
        if relanded:
            progress(f"  recovery: {len(relanded)} unfinished drops put back into landing from raw/")
    partition_tags = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
    for run in dead:
        kept = {key: value for key, value in run.tags.items() if key in partition_tags}
        progress(f"  recovery: re-running interrupted {run.job_name} {kept or ''} (run {run.run_id[:8]})")
        selection = list(run.asset_selection) if run.asset_selection else None
        _execute(defs, instance, run.job_name, summary, progress, f"resume of {run.run_id[:8]}",
                 tags={**tags, **kept, RESUMES_TAG: run.run_id}, asset_selection=selection)


def process_day(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    day: str,
    window_keys: list[str],
    tags: dict[str, str],
    summary: RunSummary,
    progress: Progress,
) -> None:
    """Baseline of the UTC day, then its windows as one range run. The daily roll-up is per local
    day, with the indicators (process_indicators), once that day is over."""
    first, last = window_keys[0], window_keys[-1]
    progress(f"  {day}: baseline, then windows {first[-5:]}..{last[-5:]} ({len(window_keys)} with new drops)")
    _execute(defs, instance, "daily_job", summary, progress, f"baseline {day}", partition_key=day,
             asset_selection=[dg.AssetKey("density_baseline")], tags=tags)
    if _execute(defs, instance, "window_job", summary, progress, f"{first}..{last}", tags={**tags, **range_tags(first, last)}):
        summary.windows.update(window_keys)
    summary.days.add(day)


def local_days_of(settings: Settings, window_keys: list[str]) -> list[str]:
    """The local dates (density.local_timezone) the windows fall on, oldest first."""
    zone = ZoneInfo(settings.config.density.local_timezone)
    return sorted({parse_window_key(key).astimezone(zone).strftime(DAY_KEY_FORMAT) for key in window_keys})


def complete_local_days(settings: Settings, local_days: list[str], now: datetime | None = None) -> list[str]:
    """The local days that are over: their local midnight has passed on the wall clock, or the
    accepted data already reaches past it (a replayed backlog). A day still arriving is never
    published: each version of a day's figures would be one more table an attacker could
    difference against the next (docs/indicators.md)."""
    from crowd_platform.common import warehouse

    zone = ZoneInfo(settings.config.density.local_timezone)
    reached = now or datetime.now(timezone.utc)
    if settings.warehouse_path.exists():
        with warehouse.connect(settings.warehouse_path) as connection:
            latest = connection.execute(warehouse.read_sql("ingestion/latest_accepted_event_window")).fetchone()[0]
        if latest is not None:
            reached = max(reached, latest)
    complete = []
    for day in local_days:
        start = datetime.strptime(day, DAY_KEY_FORMAT).replace(tzinfo=zone)
        if (start + timedelta(days=1)).astimezone(timezone.utc) <= reached:
            complete.append(day)
    return complete


def process_indicators(settings: Settings, defs: dg.Definitions, instance: dg.DagsterInstance, local_days: list[str],
                       tags: dict[str, str], summary: RunSummary, progress: Progress) -> None:
    """The local-day job (daily presence roll-up, mobility indicators) of every complete local day
    that got new windows, in date order (the flows of day D read D-1's locations). A day still arriving waits for its end (or for the
    06:00 indicators_schedule of the next day); a late correction of a past day runs it again."""
    for day in complete_local_days(settings, local_days):
        progress(f"  {day} (local): daily presence and mobility indicators")
        if _execute(defs, instance, "indicators_job", summary, progress, f"indicators {day}", partition_key=day, tags=tags):
            summary.local_days.add(day)


@dataclass
class GovernanceSummary:
    """What the governance runs did: each asset's run id and its materialization metadata (counts only)."""

    runs: dict[str, str] = field(default_factory=dict)              # asset -> run id
    metadata: dict[str, dict] = field(default_factory=dict)         # asset -> {key: plain value}
    failed_runs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed_runs


def run_governance(
    settings: Settings,
    instance: dg.DagsterInstance,
    *,
    as_of: datetime | None = None,
    purpose: str | None = None,
    actor: str | None = None,
    progress: Progress = print,
    retention: bool = True,
    checkpoint: bool = True,
) -> GovernanceSummary:
    """Materialize ``retention`` (as of ``as_of``, default now) and then ``audit_log`` (chain
    verified, witness checkpoint written) through their jobs, as the 02:00 and 02:30 schedules or
    a launch from the UI would: the runs, their asset checks and their certificates' run ids are
    in the instance like any other. The runs carry ``crowd/actor`` and ``crowd/purpose``, which
    the certificates and audit records take over."""
    defs = _definitions()
    tags = run_tags(purpose or settings.purpose, actor)
    runs = RunSummary()
    outcome = GovernanceSummary()
    steps = []
    if retention:
        as_of_text = as_of.strftime("%Y-%m-%dT%H:%M:%SZ") if as_of else ""
        steps.append(("retention_job", "retention", {"ops": {"retention": {"config": {"as_of": as_of_text}}}}))
    if checkpoint:
        steps.append(("audit_checkpoint_job", "audit_log", {}))
    for job_name, asset, run_config in steps:
        result = _execute_result(defs, instance, job_name, runs, progress, asset, run_config=run_config, tags=tags)
        outcome.runs[asset] = result.run_id
        if not result.success:
            outcome.failed_runs.append(f"{job_name} (run {result.run_id})")
            break  # the checkpoint comes after retention, never instead of it
        for materialization in result.asset_materializations_for_node(asset if asset != "audit_log" else "audit_log_checkpoint"):
            outcome.metadata[asset] = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
    return outcome


def parse_day(value: str) -> datetime:
    return datetime.strptime(value, DAY_KEY_FORMAT)


def window_job_definition() -> dg.JobDefinition:
    """`window_job`, reconstructable from this module (for the multiprocess executor and
    `dg.execute_job`, whose step processes re-import the job by reference)."""
    return _definitions().resolve_job_def("window_job")


def revalidate_drop(settings: Settings, drop: dict, manifest_relpath: str) -> tuple[str, str | None]:
    """Materialize operator_drops + staged_events for a released drop's window with the code
    location's own definitions (its "crowd" resource is bound already); return the drop's new
    status and reason."""
    from crowd_platform.common.partitions import window_key
    from crowd_platform.common.warehouse import connect
    from crowd_platform.definitions import defs
    from crowd_platform.runner.instance import get_instance

    assets = [defs.resolve_assets_def("operator_drops"), defs.resolve_assets_def("staged_events")]
    result = dg.materialize(
        assets,
        instance=get_instance(settings),
        partition_key=window_key(drop["window_start"]),
        run_config={"ops": {"operator_drops": {"config": {"manifests": [manifest_relpath]}}}},
        tags=run_tags(settings.purpose, trigger="quarantine-release"),
        raise_on_error=False,
    )
    if not result.success:
        raise RuntimeError(f"release run {result.run_id} failed; see the Dagster UI")
    with connect(settings.warehouse_path, read_only=True) as con:
        row = con.execute("SELECT status, reason FROM drops WHERE drop_id = ?", [drop["drop_id"]]).fetchone()
    return (row[0], row[1]) if row else ("unknown", None)
