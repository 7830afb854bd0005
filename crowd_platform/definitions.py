"""The one Dagster code location: every domain's definitions plus the shared resource.

Read the folders in data-flow order: defs/ingestion (drop -> validated -> staged_events),
defs/geography (cells and districts), defs/density (presence, density, baselines),
defs/alerts (crowd alerts -> broadcast requests), defs/governance (retention, audit).
"""

import dagster as dg

from crowd_platform.defs import alerts, density, geography, governance, ingestion, jobs
from crowd_platform.lib.resources import CrowdPlatform

defs = dg.Definitions.merge(
    ingestion.defs,
    geography.defs,
    density.defs,
    alerts.defs,
    governance.defs,
    jobs.defs,
    dg.Definitions(resources={"crowd": CrowdPlatform()}),
)
