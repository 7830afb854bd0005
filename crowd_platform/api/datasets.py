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
from typing import Any

from crowd_platform.common.contracts import PLATFORM_CONTRACT_ID, load_contracts
from crowd_platform.common.settings import Settings

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

PUBLICATION_SUFFIX = "_published"

DENSITY = "district_density_published"
ALERTS = "crowd_alerts_published"
TRANSITIONS = "alert_transitions_published"
# Served by their own routes; every other published table is an indicator (/indicators/{dataset}).
DEDICATED = (DENSITY, ALERTS, TRANSITIONS)


def _custom(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["property"]: item.get("value") for item in (items or []) if item.get("property")}


def published_tables(settings: Settings) -> tuple[str, ...]:
    """Physical names of the warehouse tables marked ``published: true``, in contract order."""
    platform = next((c for c in load_contracts(settings.contracts_dir) if c.contract_id == PLATFORM_CONTRACT_ID), None)
    if platform is None:
        raise ValueError(f"no {PLATFORM_CONTRACT_ID} contract in {settings.contracts_dir}")
    names = []
    for obj in platform.raw.get("schema") or []:
        custom = _custom(obj.get("customProperties"))
        if custom.get("storage") != "warehouse" or custom.get("published") is not True:
            continue
        name = str(obj.get("physicalName") or obj["name"])
        if not name.endswith(PUBLICATION_SUFFIX):
            continue
        if not IDENTIFIER.match(name):
            raise ValueError(f"{PLATFORM_CONTRACT_ID}: published table name {name!r} is not a plain identifier")
        names.append(name)
    return tuple(names)
