"""Which warehouse tables the API may serve: those marked ``published: true`` in
``data_contracts/platform_datasets.yaml`` (read through the contracts code, never a list in here)
that belong to the publication layer (design.md 4.3a): their physical name ends in
``_published``. The contract also marks ``window_completeness``, ``broadcast_requests``,
``deletion_certificates`` and ``audit_log`` published (they leave the platform to operators and
auditors, and retention keeps them at sunset); they are not k-anonymised publications and the
API never copies them.

Names come from the contract and must be plain identifiers; a request's dataset name is only
ever looked up in this set, never put into SQL.
"""

from __future__ import annotations

import re

from crowd_platform.common.contracts import PLATFORM_CONTRACT_ID, custom_properties, platform_contract
from crowd_platform.common.settings import Settings

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

PUBLICATION_SUFFIX = "_published"

DENSITY = "district_density_published"
ALERTS = "crowd_alerts_published"
TRANSITIONS = "alert_transitions_published"
# Served by their own routes; every other published table is an indicator (/indicators/{dataset}).
DEDICATED = (DENSITY, ALERTS, TRANSITIONS)


def published_tables(settings: Settings) -> tuple[str, ...]:
    """Physical names of the warehouse tables marked ``published: true``, in contract order."""
    platform = platform_contract(settings.contracts_dir)
    names = []
    for obj in platform.raw.get("schema") or []:
        custom = custom_properties(obj.get("customProperties"))
        if custom.get("storage") != "warehouse" or custom.get("published") is not True:
            continue
        name = str(obj.get("physicalName") or obj["name"])
        if not name.endswith(PUBLICATION_SUFFIX):
            continue
        if not IDENTIFIER.match(name):
            raise ValueError(f"{PLATFORM_CONTRACT_ID}: published table name {name!r} is not a plain identifier")
        names.append(name)
    return tuple(names)
