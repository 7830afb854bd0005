"""``quarantine_unroutable_job``: landing entries no window run can take (bad manifest,
unknown operator folder, symlink, non-UTF-8 name, path traversal) go to quarantine."""


import dagster as dg

from crowd_platform.ingestion.landing import UnroutableEntry
from crowd_platform.ingestion.quarantine import quarantine_unroutable
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.warehouse import WAREHOUSE_POOL


class UnroutableEntryConfig(dg.Config):
    """One entry as written by the landing sensor: names as hex of filesystem bytes."""

    operator_dir_hex: str
    names_hex: list[str]
    reason: str


class UnroutableConfig(dg.Config):
    entries: list[UnroutableEntryConfig]


@dg.op(pool=WAREHOUSE_POOL, description="Move unroutable landing entries to quarantine/ with report.json and a drops row.")
def quarantine_unroutable_op(context: dg.OpExecutionContext, crowd: CrowdPlatform, config: UnroutableConfig) -> int:
    settings = crowd.settings
    moved = 0
    with crowd.warehouse() as con:
        for raw_entry in config.entries:
            outcome = quarantine_unroutable(settings, con, UnroutableEntry.from_config(raw_entry.model_dump()), context.run_id)
            if outcome:
                moved += 1
                context.log.info(f"{outcome.drop_id}: quarantined ({outcome.reason})")
    return moved


@dg.job(description="Quarantine landing entries that cannot be routed to a window (see landing_sensor).",
        tags={"purpose": "covid19-crowd-monitoring"})
def quarantine_unroutable_job():
    quarantine_unroutable_op()


def unroutable_run_config(entries: list[UnroutableEntry]) -> dict:
    return {"ops": {"quarantine_unroutable_op": {"config": {"entries": [entry.to_config() for entry in entries]}}}}
