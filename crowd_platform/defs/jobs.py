"""Jobs that cut across domains: what one window, one day or a geography change recomputes.

A run of `window_job` for a window (or a range of windows) is the unit the landing sensor
requests: drops of that window -> validated -> published -> presence -> density -> alerts ->
broadcast requests. Assets are selected by key so this module imports no domain code.
"""

import dagster as dg

from crowd_platform.lib.partitions import daily_partitions, window_partitions

WINDOW_ASSETS = (
    "operator_drops",
    "staged_events",
    "bts_presence",
    "district_density",
    "crowd_alerts",
    "broadcast_requests",
)
GEOGRAPHY_ASSETS = (
    "operator_drops",
    "staged_events",
    "districts",
    "bts_registry",
    "bts_coverage",
    "bts_district_weights",
)
DAILY_ASSETS = ("density_baseline", "district_presence_daily")

window_job = dg.define_asset_job(
    "window_job",
    selection=dg.AssetSelection.assets(*WINDOW_ASSETS),
    partitions_def=window_partitions,
    description="Everything one 15-minute window (or a range) needs, from its drops to broadcast requests.",
)

geography_job = dg.define_asset_job(
    "geography_job",
    selection=dg.AssetSelection.assets(*GEOGRAPHY_ASSETS),
    partitions_def=window_partitions,
    description="Cell-list drops of a window, then the registry, coverage and district weights.",
)

daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    partitions_def=daily_partitions,
    description="Baselines for a day (from the weeks before it) and the daily presence roll-up.",
)

defs = dg.Definitions(jobs=[window_job, geography_job, daily_job])
