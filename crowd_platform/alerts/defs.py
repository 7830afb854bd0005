"""Alerts domain: crowd_alerts (anomaly state machine) and broadcast_requests (operator outbox)."""

import dagster as dg

from crowd_platform.alerts.assets import broadcast_requests, crowd_alerts
from crowd_platform.alerts.checks import (
    alerts_published_k_anonymous, broadcast_outbox_private, crowd_alerts_consistent, retractions_cancelled,
)

defs = dg.Definitions(
    assets=[crowd_alerts, broadcast_requests],
    asset_checks=[crowd_alerts_consistent, alerts_published_k_anonymous, broadcast_outbox_private, retractions_cancelled],
)
