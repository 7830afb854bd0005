"""Asset checks of the density domain.

Checks look at the rows written by the run they belong to (``run_id`` column), or at the
whole table when run on their own. They report counts only, never subscriber values.
"""


import dagster as dg

from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.warehouse import WAREHOUSE_POOL

from crowd_platform.density.assets import bts_presence, density_baseline, district_density

TOLERANCE = 1e-6

_RUN_SCOPE = "(NOT EXISTS (SELECT 1 FROM {table} WHERE run_id = $run_id) OR {alias}.run_id = $run_id)"


def _scope(table: str, alias: str) -> str:
    return _RUN_SCOPE.format(table=table, alias=alias)


@dg.asset_check(asset=district_density, pool=WAREHOUSE_POOL,
                description="Every parent district equals the sum of its children (subscribers and people), "
                            f"within {TOLERANCE} relative, in every window.")
def district_density_levels_consistent(context: dg.AssetCheckExecutionContext, crowd: CrowdPlatform) -> dg.AssetCheckResult:
    sql = f"""
        WITH scoped AS (
            SELECT dd.* FROM district_density AS dd WHERE {_scope('district_density', 'dd')}
        ),
        children AS (
            SELECT s.window_start, d.parent_code, sum(s.subscribers) AS subscribers, sum(s.people_estimate) AS people
            FROM scoped AS s JOIN districts AS d ON d.district_code = s.district_code AND d.level = s.level
            WHERE d.parent_code IS NOT NULL
            GROUP BY s.window_start, d.parent_code
        )
        SELECT count(*) AS parents,
               count(*) FILTER (WHERE abs(p.subscribers - c.subscribers) > {TOLERANCE} * greatest(1, abs(p.subscribers))
                                   OR abs(p.people_estimate - c.people) > {TOLERANCE} * greatest(1, abs(p.people_estimate)))
        FROM children AS c
        JOIN scoped AS p ON p.window_start = c.window_start AND p.district_code = c.parent_code
    """
    with crowd.warehouse(read_only=True) as con:
        parents, mismatched = con.execute(sql, {"run_id": context.run.run_id}).fetchone()
    return dg.AssetCheckResult(passed=mismatched == 0, metadata={"parents_checked": parents, "mismatched": mismatched})


@dg.asset_check(asset=district_density, blocking=True, pool=WAREHOUSE_POOL,
                description="district_density_published never shows a value at or below k, shows density only "
                            "with its count, and never leaves a single hidden child under a shown parent.")
def district_density_published_k_anonymous(context: dg.AssetCheckExecutionContext, crowd: CrowdPlatform) -> dg.AssetCheckResult:
    k = crowd.settings.k_anonymity
    sql = f"""
        WITH windows AS (
            SELECT DISTINCT dd.window_start FROM district_density AS dd WHERE {_scope('district_density', 'dd')}
        ),
        published AS (
            SELECT p.*, d.parent_code
            FROM district_density_published AS p
            JOIN windows USING (window_start)
            JOIN districts AS d ON d.district_code = p.district_code AND d.level = p.level
        ),
        groups AS (
            SELECT window_start, parent_code, count(*) FILTER (WHERE suppressed) AS hidden
            FROM published WHERE parent_code IS NOT NULL
            GROUP BY window_start, parent_code
        )
        SELECT
            (SELECT count(*) FROM published),
            (SELECT count(*) FROM published WHERE NOT suppressed AND (people_estimate IS NULL OR people_estimate <= $k)),
            (SELECT count(*) FROM published WHERE suppressed AND (people_estimate IS NOT NULL OR density_per_km2 IS NOT NULL)),
            (SELECT count(*) FROM groups AS g JOIN published AS p
                 ON p.window_start = g.window_start AND p.district_code = g.parent_code
             WHERE g.hidden = 1 AND NOT p.suppressed)
    """
    with crowd.warehouse(read_only=True) as con:
        rows, at_or_below_k, hidden_but_shown, recoverable = con.execute(sql, {"run_id": context.run.run_id, "k": k}).fetchone()
    return dg.AssetCheckResult(
        passed=(at_or_below_k == 0 and hidden_but_shown == 0 and recoverable == 0),
        metadata={"rows": rows, "k": k, "shown_at_or_below_k": at_or_below_k,
                  "suppressed_but_shown": hidden_but_shown, "recoverable_by_subtraction": recoverable},
    )


@dg.asset_check(asset=bts_presence, pool=WAREHOUSE_POOL,
                description="Under one-place rules (last, modal) cells add up to their sites; under 'any' a site "
                            "never has more subscribers than its cells together.")
def bts_presence_cells_match_sites(context: dg.AssetCheckExecutionContext, crowd: CrowdPlatform) -> dg.AssetCheckResult:
    sql = f"""
        WITH scoped AS (SELECT b.* FROM bts_presence AS b WHERE {_scope('bts_presence', 'b')}),
        totals AS (
            SELECT window_start, operator, location_rule,
                   sum(subscribers) FILTER (WHERE place_level = 'cell') AS cells,
                   sum(subscribers) FILTER (WHERE place_level = 'site') AS sites
            FROM scoped GROUP BY window_start, operator, location_rule
        )
        SELECT count(*),
               count(*) FILTER (WHERE (location_rule = 'any' AND sites > cells)
                                   OR (location_rule <> 'any' AND sites <> cells))
        FROM totals
    """
    with crowd.warehouse(read_only=True) as con:
        groups, bad = con.execute(sql, {"run_id": context.run.run_id}).fetchone()
    return dg.AssetCheckResult(passed=bad == 0, metadata={"window_operators": groups, "inconsistent": bad})


@dg.asset_check(asset=density_baseline, pool=WAREHOUSE_POOL,
                description="Every baseline row rests on at least 3 observations and has a median and MAD.")
def density_baseline_enough_observations(context: dg.AssetCheckExecutionContext, crowd: CrowdPlatform) -> dg.AssetCheckResult:
    sql = f"""
        SELECT count(*), count(*) FILTER (WHERE n_obs < 3 OR median IS NULL OR mad IS NULL),
               count(*) FILTER (WHERE kind = 'bootstrap')
        FROM density_baseline AS b WHERE {_scope('density_baseline', 'b')}
    """
    with crowd.warehouse(read_only=True) as con:
        rows, bad, bootstrap = con.execute(sql, {"run_id": context.run.run_id}).fetchone()
    return dg.AssetCheckResult(passed=bad == 0, metadata={"rows": rows, "below_minimum": bad, "bootstrap_rows": bootstrap})


DENSITY_CHECKS = [
    district_density_levels_consistent,
    district_density_published_k_anonymous,
    bts_presence_cells_match_sites,
    density_baseline_enough_observations,
]
