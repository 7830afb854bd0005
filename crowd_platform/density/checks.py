"""Asset checks of the density domain.

Checks look at the rows written by the run they belong to (``run_id`` column), or at the
whole table when run on their own. Their SQL is in sql/density/, named after the check. They report counts only, never subscriber values.
"""


import dagster as dg

from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.warehouse import WAREHOUSE_POOL, read_sql

from crowd_platform.density.assets import bts_presence, density_baseline, district_density

TOLERANCE = 1e-6

@dg.asset_check(asset=district_density, pool=WAREHOUSE_POOL,
                description="Every parent district equals the sum of its children (subscribers and people), "
                            f"within {TOLERANCE} relative, in every window.")
def district_density_levels_consistent(context: dg.AssetCheckExecutionContext, crowd: CrowdPlatform) -> dg.AssetCheckResult:
    with crowd.warehouse(read_only=True) as con:
        parents, mismatched = con.execute(read_sql("density/district_density_levels_consistent"),
                                          {"run_id": context.run.run_id, "tolerance": TOLERANCE}).fetchone()
    return dg.AssetCheckResult(passed=mismatched == 0, metadata={"parents_checked": parents, "mismatched": mismatched})


@dg.asset_check(asset=district_density, blocking=True, pool=WAREHOUSE_POOL,
                description="district_density_published never shows a value at or below k, shows density only "
                            "with its count, and never leaves a single hidden child under a shown parent.")
def district_density_published_k_anonymous(context: dg.AssetCheckExecutionContext, crowd: CrowdPlatform) -> dg.AssetCheckResult:
    k = crowd.settings.k_anonymity
    with crowd.warehouse(read_only=True) as con:
        rows, at_or_below_k, hidden_but_shown, recoverable = con.execute(read_sql("density/district_density_published_k_anonymous"), {"run_id": context.run.run_id, "k": k}).fetchone()
    return dg.AssetCheckResult(
        passed=(at_or_below_k == 0 and hidden_but_shown == 0 and recoverable == 0),
        metadata={"rows": rows, "k": k, "shown_at_or_below_k": at_or_below_k,
                  "suppressed_but_shown": hidden_but_shown, "recoverable_by_subtraction": recoverable},
    )


@dg.asset_check(asset=bts_presence, pool=WAREHOUSE_POOL,
                description="Under one-place rules (last, modal) cells add up to their sites; under 'any' a site "
                            "never has more subscribers than its cells together.")
def bts_presence_cells_match_sites(context: dg.AssetCheckExecutionContext, crowd: CrowdPlatform) -> dg.AssetCheckResult:
    with crowd.warehouse(read_only=True) as con:
        groups, bad = con.execute(read_sql("density/bts_presence_cells_match_sites"), {"run_id": context.run.run_id}).fetchone()
    return dg.AssetCheckResult(passed=bad == 0, metadata={"window_operators": groups, "inconsistent": bad})


@dg.asset_check(asset=density_baseline, pool=WAREHOUSE_POOL,
                description="Every baseline row rests on at least 3 observations and has a median and MAD.")
def density_baseline_enough_observations(context: dg.AssetCheckExecutionContext, crowd: CrowdPlatform) -> dg.AssetCheckResult:
    with crowd.warehouse(read_only=True) as con:
        rows, bad, bootstrap = con.execute(read_sql("density/density_baseline_enough_observations"), {"run_id": context.run.run_id}).fetchone()
    return dg.AssetCheckResult(passed=bad == 0, metadata={"rows": rows, "below_minimum": bad, "bootstrap_rows": bootstrap})


DENSITY_CHECKS = [
    district_density_levels_consistent,
    district_density_published_k_anonymous,
    bts_presence_cells_match_sites,
    density_baseline_enough_observations,
]
