"""Indicators domain: subscriber_daily_location, district_unique_subscribers, district_daily_location,
district_od_flows (+ their published copies), per local day."""

import dagster as dg

from crowd_platform.indicators.assets import INDICATOR_ASSETS
from crowd_platform.indicators.checks import INDICATOR_CHECKS

defs = dg.Definitions(assets=INDICATOR_ASSETS, asset_checks=INDICATOR_CHECKS)
