"""One run of window_job in its own OS process, for the concurrency test.

python crowd_platform_tests/concurrent_worker.py '{"dagster/partition": "2020-03-24-03:00"}'
Uses DAGSTER_HOME (the test's PostgreSQL instance) and CROWD_HOME from the environment, the
multiprocess executor (one process per step, spawn start method), exit code 0 on success.
"""

import json
import sys

import dagster as dg

from crowd_platform.runner.orchestration import window_job_definition

ASSETS = ("operator_drops", "staged_events", "bts_presence", "district_density")

if __name__ == "__main__":
    tags = {**json.loads(sys.argv[1]), "crowd/purpose": "concurrency-test", "crowd/actor": "pytest"}
    with dg.DagsterInstance.get() as instance:
        with dg.execute_job(dg.reconstructable(window_job_definition), instance=instance, tags=tags,
                            asset_selection=[dg.AssetKey(key) for key in ASSETS]) as result:
            sys.exit(0 if result.success else 1)
