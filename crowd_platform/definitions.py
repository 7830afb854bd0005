"""The one Dagster code location: every domain's definitions plus the shared resource.

Read the folders in data-flow order: ingestion (drop -> validated -> staged_events),
geography (cells and districts), density (presence, density, baselines), alerts (crowd
alerts -> broadcast requests), governance (retention, audit). Cross-domain jobs: jobs.py.
"""

import dagster as dg

# Domain modules, not their Definitions objects: Dagster's loader refuses a module that holds
# more than one Definitions at module scope (the webserver would not load this location).
from crowd_platform import jobs
from crowd_platform.alerts import defs as alerts
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.density import defs as density
from crowd_platform.geography import defs as geography
from crowd_platform.governance import defs as governance
from crowd_platform.ingestion import defs as ingestion

defs = dg.Definitions.merge(
    ingestion.defs,
    geography.defs,
    density.defs,
    alerts.defs,
    governance.defs,
    jobs.defs,
    dg.Definitions(resources={"crowd": CrowdPlatform()}),
)
