"""Geography domain: districts, cell registry, Voronoi coverage, district weights (docs/geography.md)."""

import dagster as dg

from crowd_platform.geography.assets import geography_assets
from crowd_platform.geography.checks import geography_checks

defs = dg.Definitions(assets=geography_assets, asset_checks=geography_checks)
