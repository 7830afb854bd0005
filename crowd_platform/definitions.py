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
from crowd_platform.common.provenance import domain_code_version
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.density import defs as density
from crowd_platform.geography import defs as geography
from crowd_platform.governance import defs as governance
from crowd_platform.indicators import defs as indicators
from crowd_platform.ingestion import defs as ingestion

# Policy applied once, here: each domain's assets are its group, owned by its team, tagged with
# the domain, and versioned by the domain's code (common/provenance.domain_code_version).
DOMAIN_OWNERS = {
    "ingestion": "team:data-engineering",
    "geography": "team:geography",
    "density": "team:density",
    "indicators": "team:indicators",
    "alerts": "team:alerts",
    "governance": "team:governance",
}
KIND_TAG_PREFIX = "dagster/kind/"


def with_domain_policy(domain: str, domain_defs: dg.Definitions) -> dg.Definitions:
    version = domain_code_version(domain)

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        tags = {key: value for key, value in spec.tags.items() if not key.startswith(KIND_TAG_PREFIX)}
        return spec.replace_attributes(group_name=domain, owners=[DOMAIN_OWNERS[domain]], code_version=version,
                                       tags={**tags, "domain": domain})

    return domain_defs.map_asset_specs(func=apply)


defs = dg.Definitions.merge(
    with_domain_policy("ingestion", ingestion.defs),
    with_domain_policy("geography", geography.defs),
    with_domain_policy("density", density.defs),
    with_domain_policy("indicators", indicators.defs),
    with_domain_policy("alerts", alerts.defs),
    with_domain_policy("governance", governance.defs),
    jobs.defs,
    dg.Definitions(resources={"crowd": CrowdPlatform()}),
)
