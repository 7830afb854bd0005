"""The one Dagster code location: every domain's definitions plus the shared resource.

Read the folders in data-flow order: ingestion (drop -> validated -> staged_events),
geography (cells and districts), density (presence, density, baselines), alerts (crowd
alerts -> broadcast requests), governance (retention, audit). Cross-domain jobs: jobs.py.
"""

import dagster as dg

from crowd_platform import jobs
from crowd_platform.alerts.defs import defs as alerts_defs
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.density.defs import defs as density_defs
from crowd_platform.geography.defs import defs as geography_defs
from crowd_platform.governance.defs import defs as governance_defs
from crowd_platform.ingestion.defs import defs as ingestion_defs

defs = dg.Definitions.merge(
    ingestion_defs,
    geography_defs,
    density_defs,
    alerts_defs,
    governance_defs,
    jobs.defs,
    dg.Definitions(resources={"crowd": CrowdPlatform()}),
)
