"""Asset checks of the geography domain: rejected cells are reported, weights stay normalised."""

from __future__ import annotations

import dagster as dg

from crowd_platform.common.resources import CrowdPlatform

WEIGHT_TOLERANCE = 1e-9


@dg.asset_check(
    asset="bts_registry",
    description="Rows of the cell-list drops kept out of the registry, counted per reason "
                "(outside the area, impossible coordinates, duplicated ids, ...). WARN: the registry is "
                "usable, but an operator should fix its cell list.",
)
def registry_rejects(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    with crowd.warehouse(read_only=True) as con:
        rows = con.execute(
            "SELECT reason, operator, count(*) FROM bts_registry_rejects GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
        accepted = con.execute("SELECT count(*) FROM bts_registry").fetchone()[0]
    by_reason: dict[str, int] = {}
    by_operator: dict[str, int] = {}
    for reason, operator, count in rows:
        by_reason[reason] = by_reason.get(reason, 0) + int(count)
        by_operator[str(operator)] = by_operator.get(str(operator), 0) + int(count)
    total = sum(by_reason.values())
    return dg.AssetCheckResult(
        passed=total == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rejected_rows": total,
            "registry_versions": int(accepted),
            "rejects_by_reason": dg.MetadataValue.json(by_reason),
            "rejects_by_operator": dg.MetadataValue.json(by_operator),
        },
    )


def _empty_registry_reason(con) -> str | None:
    """One line on why no cell is open in the registry, or None when some is."""
    if con.execute("SELECT count(*) FROM bts_registry WHERE valid_to IS NULL").fetchone()[0]:
        return None
    drops = con.execute("SELECT count(*) FROM drops WHERE feed = 'cells' AND status = 'accepted'").fetchone()[0]
    if not drops:
        return "no accepted cell-list drop of any operator yet: the registry has no cell"
    rejects = con.execute("SELECT reason, count(*) FROM bts_registry_rejects GROUP BY ALL ORDER BY 2 DESC, 1").fetchall()
    counts = ", ".join(f"{reason} {count}" for reason, count in rejects) or "none"
    return (f"no cell of any operator lies inside the configured area ({drops} cell-list drops; "
            f"rejected rows: {counts}): check geography.levels and the operators' cell lists")


@dg.asset_check(
    asset="bts_registry",
    description="The registry has at least one current cell: an area whose every cell was rejected (e.g. "
                "boundaries of another country than the cell lists) has no coverage and would measure nobody.",
)
def registry_has_cells(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    with crowd.warehouse(read_only=True) as con:
        reason = _empty_registry_reason(con)
        current = con.execute("SELECT operator, count(*) FROM bts_registry WHERE valid_to IS NULL "
                              "GROUP BY ALL ORDER BY 1").fetchall()
    metadata = {"current_cells_by_operator": dg.MetadataValue.json({str(op): int(n) for op, n in current})}
    if reason:
        metadata["reason"] = reason
    return dg.AssetCheckResult(passed=reason is None, severity=dg.AssetCheckSeverity.ERROR, description=reason,
                               metadata=metadata)


@dg.asset_check(
    asset="bts_district_weights",
    blocking=True,
    description="Every (site, scope) of bts_coverage has weights, all weights are in (0, 1], and they sum "
                "to 1 within 1e-9: otherwise density would create or lose people.",
)
def weights_sum_to_one(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    with crowd.warehouse(read_only=True) as con:
        bad_sums = con.execute(
            "SELECT count(*) FROM (SELECT site_id, scope, sum(weight) AS total FROM bts_district_weights "
            "GROUP BY ALL) WHERE abs(total - 1) > ?", [WEIGHT_TOLERANCE]
        ).fetchone()[0]
        out_of_range = con.execute(
            "SELECT count(*) FROM bts_district_weights WHERE NOT (weight > 0 AND weight <= 1 + ?)", [WEIGHT_TOLERANCE]
        ).fetchone()[0]
        without_weights = con.execute(
            "SELECT count(*) FROM bts_coverage c ANTI JOIN bts_district_weights w USING (site_id, scope)"
        ).fetchone()[0]
    return dg.AssetCheckResult(
        passed=bad_sums == 0 and out_of_range == 0 and without_weights == 0,
        metadata={
            "sites_not_summing_to_one": int(bad_sums),
            "weights_out_of_range": int(out_of_range),
            "sites_without_weights": int(without_weights),
        },
    )


geography_checks = [registry_rejects, registry_has_cells, weights_sum_to_one]
