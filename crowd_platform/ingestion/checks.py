"""Asset checks of operator drops: guarding their publish (write-audit-publish), and freshness.

The publish checks are evaluated inside ``operator_drops`` (declared as its check_specs) because
they need the window range of the run; ``staged_events`` runs only when the blocking ones pass.
``drops_fresh`` is an asset check of its own (registered in ``defs.py``, non-blocking): it looks
at every operator, not at the run's range. Metadata holds drop ids, rule names and counts only.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import dagster as dg

from crowd_platform.common.contracts import operator_event_contracts
from crowd_platform.common.resources import CrowdPlatform
from crowd_platform.ingestion.drops import file_sha256, staging_file
from crowd_platform.ingestion.freshness import FreshnessReport, format_lag, freshness_as_of_newest_drop
from crowd_platform.ingestion.layout import sql_literal
from crowd_platform.ingestion.manifest import MANIFEST_SUFFIX
from crowd_platform.common.partitions import window_key, windows_between
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import WAREHOUSE_POOL, fetch_dicts, read_sql

ASSET_KEY = dg.AssetKey("operator_drops")
# docs/design.md section 4.1; the contracts' own forbiddenPattern is used when one is declared.
# An Indonesian mobile number, with or without separators; anchored for one value, bare for a search in text.
MSISDN_BODY = r"(\+?62|0)[ -]?8([ -]?[0-9]){7,12}"
DEFAULT_MSISDN_PATTERN = f"^{MSISDN_BODY}$"

CHECK_SPECS = [
    dg.AssetCheckSpec("contract_rules", asset=ASSET_KEY, blocking=True,
                      description="Every contract rule ran on every drop; a staged drop has a passing record and intact raw bytes."),
    dg.AssetCheckSpec("no_raw_msisdn", asset=ASSET_KEY, blocking=True,
                      description="No staged subscriber_key looks like a phone number (must never happen)."),
    dg.AssetCheckSpec("manifest_matches", asset=ASSET_KEY, blocking=True,
                      description="Row count and sha256 of each staged drop equal its manifest."),
    dg.AssetCheckSpec("window_coverage", asset=ASSET_KEY, blocking=False,
                      description="Operators without an accepted or staged drop, per window of the range."),
]


def _staged(con, start: datetime, end: datetime) -> list[dict]:
    return fetch_dicts(con, "SELECT * FROM drops WHERE status = 'received' AND window_start >= ? AND window_start < ? ORDER BY drop_id", [start, end])


def _markdown(rows: list[tuple], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows[:50]]
    if len(rows) > 50:
        lines.append(f"| ... {len(rows) - 50} more | | | |")
    return "\n".join(lines)


def contract_rules_check(settings: Settings, con, start: datetime, end: datetime) -> dg.AssetCheckResult:
    quarantined = fetch_dicts(con, read_sql("ingestion/quarantined_drops_of_range"), {"start": start, "end": end})
    problems: list[str] = []
    for drop in _staged(con, start, end):
        if drop["validated_at"] is None:
            problems.append(f"{drop['drop_id']}: received but not validated")
            continue
        verdict = con.execute("SELECT count(*), count(*) FILTER (WHERE NOT passed) FROM check_results WHERE drop_id = ? AND engine NOT IN ('manifest', 'profile')",
                              [drop["drop_id"]]).fetchone()
        if verdict[0] == 0 or verdict[1]:
            problems.append(f"{drop['drop_id']}: no passing validation record")
        if not staging_file(settings, drop["drop_id"], drop["feed"]).exists():
            problems.append(f"{drop['drop_id']}: staging file missing")
        raw = settings.resolve(drop["raw_path"]) or Path("")
        if not raw.is_file() or file_sha256(raw) != drop["sha256"]:
            problems.append(f"{drop['drop_id']}: raw copy missing or hash differs")
    for drop in fetch_dicts(con, "SELECT drop_id FROM drops WHERE status = 'quarantined' AND window_start >= ? AND window_start < ?", [start, end]):
        if (settings.staging / drop["drop_id"]).exists():
            problems.append(f"{drop['drop_id']}: quarantined drop still in staging")
    table = _markdown([(row["drop_id"], row["operator"], ", ".join(row["rules"] or []) or "-", row["unexpected"]) for row in quarantined],
                      ("drop_id", "operator", "failed rules", "counts"))
    metadata = {"quarantined_drops": len(quarantined), "quarantined": dg.MetadataValue.md(table), "problems": len(problems)}
    if problems:
        metadata["problem_list"] = dg.MetadataValue.md("\n".join(f"- {problem}" for problem in problems[:50]))
        return dg.AssetCheckResult(check_name="contract_rules", passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
    if quarantined:
        return dg.AssetCheckResult(check_name="contract_rules", passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)
    return dg.AssetCheckResult(check_name="contract_rules", passed=True, metadata=metadata)


def _msisdn_pattern(settings: Settings, operator: str) -> str:
    contract = operator_event_contracts(settings.contracts_dir).get(operator)
    if contract:
        for _column, rule in contract.rules():
            if rule.get("name", "").endswith("not_msisdn") and "forbiddenPattern" in (rule.get("arguments") or {}):
                return str(rule["arguments"]["forbiddenPattern"])
    return DEFAULT_MSISDN_PATTERN


def no_raw_msisdn_check(settings: Settings, con, start: datetime, end: datetime) -> dg.AssetCheckResult:
    offending = []
    scanned = 0
    for drop in _staged(con, start, end):
        path = staging_file(settings, drop["drop_id"], drop["feed"])
        if (drop.get("feed_kind") or drop["feed"]) != "events" or not path.exists():
            continue
        scanned += 1
        count = con.execute(
            f"SELECT count(*) FROM read_parquet({sql_literal(str(path))}) WHERE regexp_matches(subscriber_key, ?) "
            f"OR regexp_matches(subscriber_key, ?)", [_msisdn_pattern(settings, drop["operator"]), DEFAULT_MSISDN_PATTERN]).fetchone()[0]
        if count:
            offending.append((drop["drop_id"], count))
    return dg.AssetCheckResult(
        check_name="no_raw_msisdn", passed=not offending, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"staged_files_scanned": scanned, "files_with_msisdn": len(offending),
                  "offending": dg.MetadataValue.md(_markdown(offending, ("drop_id", "rows"))) if offending else "none"},
    )


def manifest_matches_check(settings: Settings, con, start: datetime, end: datetime) -> dg.AssetCheckResult:
    mismatches = []
    staged = _staged(con, start, end)
    for drop in staged:
        path = staging_file(settings, drop["drop_id"], drop["feed"])
        raw = settings.resolve(drop["raw_path"]) or Path("")
        raw_manifest = raw.with_name(raw.name + MANIFEST_SUFFIX)
        if not path.exists() or not raw_manifest.exists():
            mismatches.append((drop["drop_id"], "staging file or raw manifest missing"))
            continue
        manifest = json.loads(raw_manifest.read_text(encoding="utf-8"))
        rows = con.execute(f"SELECT count(*) FROM read_parquet({sql_literal(str(path))})").fetchone()[0]
        if rows != manifest.get("row_count"):
            mismatches.append((drop["drop_id"], f"staged rows {rows} != manifest {manifest.get('row_count')}"))
        if drop["sha256"] != str(manifest.get("sha256") or "").lower():  # hex case is not significant
            mismatches.append((drop["drop_id"], "sha256 differs from manifest"))
    return dg.AssetCheckResult(
        check_name="manifest_matches", passed=not mismatches, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"staged_drops": len(staged), "mismatches": len(mismatches),
                  "details": dg.MetadataValue.md(_markdown(mismatches, ("drop_id", "problem"))) if mismatches else "none"},
    )


def window_coverage_check(settings: Settings, con, start: datetime, end: datetime) -> dg.AssetCheckResult:
    operators = sorted(operator_event_contracts(settings.contracts_dir))
    present = {
        (row[0], row[1]) for row in con.execute(
            "SELECT window_start, operator FROM drops WHERE coalesce(feed_kind, feed) = 'events' AND window_start >= ? AND window_start < ? "
            "AND (status = 'accepted' OR (status = 'received' AND validated_at IS NOT NULL))", [start, end]).fetchall()
    }
    present_keys = {(window_key(moment), operator) for moment, operator in present}
    gaps = []
    for window in windows_between(start, end, settings.window_minutes):
        missing = [operator for operator in operators if (window_key(window), operator) not in present_keys]
        if missing:
            gaps.append((window_key(window), ", ".join(missing)))
    return dg.AssetCheckResult(
        check_name="window_coverage", passed=not gaps, severity=dg.AssetCheckSeverity.WARN,
        metadata={"windows": len(windows_between(start, end, settings.window_minutes)), "windows_with_gaps": len(gaps),
                  "gaps": dg.MetadataValue.md(_markdown(gaps, ("window", "operators without a drop"))) if gaps else "none"},
    )


def evaluate_checks(settings: Settings, con, start: datetime, end: datetime) -> list[dg.AssetCheckResult]:
    return [
        contract_rules_check(settings, con, start, end),
        no_raw_msisdn_check(settings, con, start, end),
        manifest_matches_check(settings, con, start, end),
        window_coverage_check(settings, con, start, end),
    ]


def drops_fresh_result(report: FreshnessReport | None) -> dg.AssetCheckResult:
    """Fails when an operator with an active events contract went silent: a window after its last
    delivered drop is past its contract's latency (WARN; ERROR beyond a few windows)."""
    if report is None:
        return dg.AssetCheckResult(check_name="drops_fresh", passed=True, metadata={"operators": 0, "note": "no events drop delivered yet"})
    rows = [(operator.name, operator.last_window_start.strftime("%Y-%m-%d %H:%M") if operator.last_window_start else "-",
             format_lag(operator.lag), operator.overdue_windows, len(operator.missing_today), operator.quarantined_today,
             operator.state) for operator in report.operators]
    metadata: dict = {
        "as_of_newest_window_end": report.as_of.isoformat(),
        "operators": len(report.operators),
        "late_operators": dg.MetadataValue.json(report.late_operators),
        "freshness": dg.MetadataValue.md(_markdown(rows, ("operator", "last window (UTC)", "lag", "overdue windows",
                                                          "missing today", "quarantined today", "state"))),
    }
    metadata.update({f"lag_minutes_{operator.name.replace('/', '_')}": operator.lag.total_seconds() / 60
                     for operator in report.operators if operator.lag is not None})
    if not report.late_operators:
        return dg.AssetCheckResult(check_name="drops_fresh", passed=True, metadata=metadata)
    severe = any(operator.severe for operator in report.operators)
    return dg.AssetCheckResult(check_name="drops_fresh", passed=False, metadata=metadata,
                               severity=dg.AssetCheckSeverity.ERROR if severe else dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=ASSET_KEY, name="drops_fresh", pool=WAREHOUSE_POOL, blocking=False,
                description="Every operator with an active events contract delivered its windows within the contract's "
                            "latency, judged as of the newest window any operator delivered (WARN when a window is "
                            "overdue, ERROR when more than a few are). Metadata: each operator's lag.")
def drops_fresh(crowd: CrowdPlatform) -> dg.AssetCheckResult:
    settings = crowd.settings
    if not settings.warehouse_path.exists():
        return drops_fresh_result(None)
    with crowd.warehouse(read_only=True) as con:
        return drops_fresh_result(freshness_as_of_newest_drop(con, settings))


INGESTION_CHECKS = [drops_fresh]
