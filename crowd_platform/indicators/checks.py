"""Asset checks of the indicators domain: the published tables are k-anonymous (blocking).

Scope: the local days of the checked run, or every published day when run on its own. Counts
only, never a subscriber value.
"""

import dagster as dg

from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.common.warehouse import WAREHOUSE_POOL, read_sql
from crowd_platform.indicators.assets import district_daily_location, district_od_flows, district_unique_subscribers


def _k_anonymous(context: dg.AssetCheckExecutionContext, crowd: CrowdPlatform) -> dg.AssetCheckResult:
    k = crowd.settings.k_anonymity
    with crowd.warehouse(read_only=True) as con:
        rows, at_or_below_k, hidden_but_shown, recoverable = con.execute(
            read_sql("indicators/indicators_published_k_anonymous"), {"run_id": context.run.run_id, "k": k}).fetchone()
    return dg.AssetCheckResult(
        passed=(at_or_below_k == 0 and hidden_but_shown == 0 and recoverable == 0),
        metadata={"rows": rows, "k": k, "shown_at_or_below_k": at_or_below_k,
                  "suppressed_but_shown": hidden_but_shown, "recoverable_by_subtraction": recoverable},
    )


_DESCRIPTION = ("The published indicator tables never show a count at or below k nor a suppressed row's count, and "
                "never leave a single hidden district under a shown parent or a single hidden flow under a shown "
                "origin or destination total.")


@dg.asset_check(asset=district_unique_subscribers, blocking=True, pool=WAREHOUSE_POOL, description=_DESCRIPTION)
def district_unique_subscribers_published_k_anonymous(context: dg.AssetCheckExecutionContext,
                                                      crowd: CrowdPlatform) -> dg.AssetCheckResult:
    return _k_anonymous(context, crowd)


@dg.asset_check(asset=district_daily_location, blocking=True, pool=WAREHOUSE_POOL, description=_DESCRIPTION)
def district_daily_location_published_k_anonymous(context: dg.AssetCheckExecutionContext,
                                                  crowd: CrowdPlatform) -> dg.AssetCheckResult:
    return _k_anonymous(context, crowd)


@dg.asset_check(asset=district_od_flows, blocking=True, pool=WAREHOUSE_POOL, description=_DESCRIPTION)
def district_od_flows_published_k_anonymous(context: dg.AssetCheckExecutionContext,
                                            crowd: CrowdPlatform) -> dg.AssetCheckResult:
    return _k_anonymous(context, crowd)


INDICATOR_CHECKS = [
    district_unique_subscribers_published_k_anonymous,
    district_daily_location_published_k_anonymous,
    district_od_flows_published_k_anonymous,
]
