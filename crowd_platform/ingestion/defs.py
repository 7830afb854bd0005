"""Ingestion domain: landing sensor, operator_drops (+ contract checks, drops_fresh), staged_events, quarantine."""

import dagster as dg

from crowd_platform.ingestion.assets import ASSETS
from crowd_platform.ingestion.checks import INGESTION_CHECKS
from crowd_platform.ingestion.jobs import quarantine_unroutable_job
from crowd_platform.ingestion.sensors import landing_sensor

defs = dg.Definitions(assets=ASSETS, asset_checks=INGESTION_CHECKS, sensors=[landing_sensor], jobs=[quarantine_unroutable_job])
