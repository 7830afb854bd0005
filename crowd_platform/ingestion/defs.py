"""Ingestion domain: landing sensor, operator_drops (+ contract checks), staged_events, quarantine."""

import dagster as dg

from crowd_platform.ingestion.assets import ASSETS
from crowd_platform.ingestion.jobs import quarantine_unroutable_job
from crowd_platform.ingestion.sensors import landing_sensor

defs = dg.Definitions(assets=ASSETS, sensors=[landing_sensor], jobs=[quarantine_unroutable_job])
