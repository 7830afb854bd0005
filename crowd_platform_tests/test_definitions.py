"""The real code location loads, holds every asset of docs/design.md section 3, and its graph
matches the reviewed snapshot (so lineage changes show up in review).

Regenerate the snapshot after an intended change: UPDATE_SNAPSHOTS=1 pytest crowd_platform_tests/test_definitions.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from crowd_platform.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"

DESIGN_ASSETS = {
    "operator_drops", "staged_events", "bts_registry", "districts", "bts_coverage",
    "bts_district_weights", "bts_presence", "district_density", "density_baseline",
    "crowd_alerts", "broadcast_requests", "retention", "audit_log",
}


def _partitions(partitions_def) -> str | None:
    """Kind, cron and time zone: a day that moves from UTC to local time shows in review."""
    if partitions_def is None:
        return None
    described = type(partitions_def).__name__
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        described += f" {partitions_def.cron_schedule} {partitions_def.timezone}"
    return described


def graph_snapshot() -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        spec = node.to_asset_spec() if hasattr(node, "to_asset_spec") else None
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "owners": sorted(node.owners),
            "kinds": sorted(spec.kinds) if spec is not None else [],
            "partitioned": _partitions(node.partitions_def),
            # Which steps queue for the one-writer warehouse pool, and which compute outside it.
            "pool": defs.resolve_assets_def(key).op.pool if node.is_executable else None,
            "checks": sorted(check.name for check in node.check_keys),
            "blocking_checks": sorted(
                check_key.name for check_key in node.check_keys if graph.get_check_spec(check_key).blocking
            ),
        }
    return {
        "assets": assets,
        "jobs": sorted(job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")),
        "sensors": sorted(sensor.name for sensor in defs.get_repository_def().sensor_defs),
        "schedules": sorted(schedule.name for schedule in defs.get_repository_def().schedule_defs),
    }


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)


def test_every_design_asset_exists_with_group_and_owner():
    snapshot = graph_snapshot()["assets"]
    missing = DESIGN_ASSETS - set(snapshot)
    assert not missing, f"assets of docs/design.md section 3 missing: {sorted(missing)}"
    for name in DESIGN_ASSETS:
        assert snapshot[name]["group"] not in (None, "default"), f"{name} has no group"
        assert snapshot[name]["owners"], f"{name} has no owner"
        assert snapshot[name]["kinds"], f"{name} has no kinds"


def test_data_flow_order():
    """The lineage a newcomer reads in docs/design.md: drop -> ... -> broadcast request."""
    assets = graph_snapshot()["assets"]
    chain = ["operator_drops", "staged_events", "bts_presence", "district_density", "crowd_alerts", "broadcast_requests"]
    for upstream, downstream in zip(chain, chain[1:]):
        assert upstream in assets[downstream]["deps"], f"{downstream} does not depend on {upstream}"
    assert "bts_district_weights" in assets["district_density"]["deps"]
    assert "operator_drops" in assets and assets["operator_drops"]["blocking_checks"], "drops need blocking checks"


def test_landing_sensor_runs_by_default():
    sensor = defs.resolve_sensor_def("landing_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_asset_graph_matches_snapshot():
    current = graph_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert current == expected, "asset graph changed: review the lineage change, then UPDATE_SNAPSHOTS=1"


def test_domain_policy_gives_every_asset_its_domain_version_and_tag():
    """One convention: group = domain, owner = the domain's team, code_version = a hash of the
    domain's code and SQL; a change in one domain does not mark another domain's assets changed."""
    from crowd_platform.common.provenance import domain_code_version
    from crowd_platform.definitions import DOMAIN_OWNERS

    graph = defs.resolve_asset_graph()
    seen = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        domain = node.group_name
        seen.add(domain)
        assert domain in DOMAIN_OWNERS, f"{key.to_user_string()} is in no domain"
        assert node.code_version == domain_code_version(domain)
        assert node.tags.get("domain") == domain
        assert list(node.owners) == [DOMAIN_OWNERS[domain]]
    assert seen == set(DOMAIN_OWNERS)
    assert len({domain_code_version(domain) for domain in DOMAIN_OWNERS}) == len(DOMAIN_OWNERS)
