"""The alert publication: what leaves the platform about crowd alerts (docs/design.md section 4.3).

crowd_alerts and alert_transitions are internal: they keep the evidence the engine decided on
(observed counts, also at site level and at or below k; baseline median and MAD; ratio, z,
excess). Outputs (published tables, `audit trace`, `audit report`, the API) read the published
copies rebuilt here, whose only number is the place's people estimate exactly as
district_density_published shows it for that window. That makes suppression hold across
outputs by construction: an alert never shows a value the density publication hides, nor a
different one, and no derived value (ratio, z, excess, median) is there to give one back.
"""

from __future__ import annotations

from typing import Any

import duckdb

from crowd_platform.common.warehouse import read_sql, transaction

PUBLISHED_TABLES = ("crowd_alerts_published", "alert_transitions_published")


def publish_alerts(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Rebuild both published alert tables from the internal ones (small: alerts, not windows).

    Every alert still in crowd_alerts is rebuilt rather than a range: late data re-evaluates
    later windows and retracts alerts anywhere after the range, and the density publication of
    a window can change with a redelivery; rebuilding keeps every published alert in step with
    both. A published alert whose internal row is gone (sunset with --keep-aggregates) stays:
    its own retention decides."""
    with transaction(con):
        for table in PUBLISHED_TABLES:
            con.execute(f"DELETE FROM {table} WHERE alert_id IN (SELECT alert_id FROM crowd_alerts)")
            con.execute(read_sql(f"publication/{table}"))
        alerts, shown = con.execute(
            "SELECT count(*), count(people_estimate) FROM crowd_alerts_published").fetchone()
    return {"alerts_published": alerts, "alerts_with_evidence_shown": shown, "alerts_with_evidence_hidden": alerts - shown}


def check_alert_publication(con: duckdb.DuckDBPyConnection, k: int) -> dict[str, int]:
    """Counts of the publication's violations (all must be 0): see sql/publication/alerts_published_k_anonymous.sql."""
    rows, at_or_below_k, differs, site_counts = con.execute(
        read_sql("publication/alerts_published_k_anonymous"), {"k": k}).fetchone()
    return {"evidence_rows": rows, "at_or_below_k": at_or_below_k, "differs_from_density": differs,
            "site_counts": site_counts}
