"""Density domain: bts_presence, district_density (+ published), district_presence_daily, density_baseline."""

import dagster as dg

from crowd_platform.density.assets import DENSITY_ASSETS
from crowd_platform.density.checks import DENSITY_CHECKS

defs = dg.Definitions(assets=DENSITY_ASSETS, asset_checks=DENSITY_CHECKS)
