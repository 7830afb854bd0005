"""Sunset ends the platform: every personal and pseudonymized datum is purged with
certificates, and then the remaining files and warehouse are scanned, because "no personal
data left" must be shown, not assumed from the deletions having run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import duckdb

from crowd_platform.common import audit, storage
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import connect
from crowd_platform.governance.retention.delete import apply_retention
from crowd_platform.governance.retention.plan import RetentionOutcome
from crowd_platform.governance.retention.policy import Progress
from crowd_platform.governance.retention.verify import outcome_summary

# Columns that legitimately hold 64-hex values that are not subscribers: file hashes, chain
# hashes and ids derived from them. Everything else must hold no 64-hex value after sunset.
METADATA_HEX_COLUMN = re.compile(r"(sha256|hash|_path|^details$|^(source_)?drop_ids?$|^object_id$|^certificate_id$|"
                                 r"^request_id$|^alert_id$|^run_id$|^partition_key$|^code_version$|^key_id$)")
SAMPLE_KEYS_PER_FILE_AT_SUNSET = 20


@dataclass
class SunsetReport:
    outcome: RetentionOutcome
    sampled_keys: int
    needle_hits: int
    hex_hits: dict[str, int]
    table_hits: dict[str, int]
    needle_hit_places: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.outcome.failed and not self.needle_hits and not self.hex_hits and not self.table_hits

    def lines(self) -> list[str]:
        summary = outcome_summary(self.outcome)
        lines = [f"sunset: {summary['objects']} object(s) deleted with certificates {summary['by_kind']}, "
                 f"{summary['rows']} warehouse rows, {summary['failed_verification']} failed verification",
                 f"scan: {self.sampled_keys} sampled subscriber keys searched in every remaining file: {self.needle_hits} hit(s)",
                 f"scan: unexplained 64-hex tokens in remaining files: {sum(self.hex_hits.values())}",
                 f"scan: 64-hex values in non-metadata warehouse columns: {sum(self.table_hits.values())}"]
        lines += [f"  sampled key found in {place}" for place in self.needle_hit_places]
        lines += [f"  {path}: {count}" for path, count in sorted(self.hex_hits.items())]
        lines += [f"  {column}: {count}" for column, count in sorted(self.table_hits.items())]
        lines.append("sunset verified: no personal data left" if self.clean else "sunset NOT clean: see above")
        return lines


def _collect_needles(settings: Settings) -> list[str]:
    """Sample subscriber keys from every personal file before it is deleted (memory only)."""
    from crowd_platform.governance.privacy_scan import HEX64, iter_files, _inflate_gzip

    needles: set[str] = set()
    for path in iter_files([settings.events_lake, settings.staging]):
        if path.suffix == ".parquet":
            try:
                with duckdb.connect() as scratch:
                    needles.update(row[0] for row in scratch.execute(
                        "SELECT DISTINCT subscriber_key FROM read_parquet(?) WHERE subscriber_key IS NOT NULL LIMIT ?",
                        [str(path), SAMPLE_KEYS_PER_FILE_AT_SUNSET]).fetchall())
            except duckdb.Error:
                continue
    for path in iter_files([settings.raw, settings.quarantine]):
        if path.suffix == ".json":
            continue  # manifests and reports hold file hashes, not subscriber keys
        data = path.read_bytes()[: 4 << 20]
        inflated = _inflate_gzip(data) if data[:2] == b"\x1f\x8b" else data
        tokens = HEX64.findall(inflated or b"")[:SAMPLE_KEYS_PER_FILE_AT_SUNSET]
        needles.update(token.decode() for token in tokens)
    return sorted(needles)


def _warehouse_hex_scan(settings: Settings) -> tuple[set[str], dict[str, int]]:
    """(allowed metadata hex values, non-metadata column -> count of 64-hex values)."""
    allowed: set[str] = set()
    hits: dict[str, int] = {}
    with connect(settings.warehouse_path, read_only=True) as connection:
        columns = connection.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE data_type LIKE 'VARCHAR%' AND table_schema = 'main'"
        ).fetchall()
        for table, column, data_type in columns:
            text = f'array_to_string("{column}", \',\')' if data_type.endswith("[]") else f'"{column}"'
            if METADATA_HEX_COLUMN.search(column):
                for (values,) in connection.execute(
                    f"SELECT regexp_extract_all({text}, '[0-9a-f]{{64}}') FROM \"{table}\" WHERE {text} IS NOT NULL"
                ).fetchall():
                    allowed.update(values or [])
            else:
                count = connection.execute(
                    f"SELECT count(*) FROM \"{table}\" WHERE regexp_matches({text}, '[0-9a-f]{{64}}')"
                ).fetchone()[0]
                if count:
                    hits[f"{table}.{column}"] = int(count)
    return allowed, hits


def sunset(settings: Settings, *, keep_aggregates: bool = False, actor: str | None = None, purpose: str | None = None,
           run_id: str | None = None, progress: Progress | None = None) -> SunsetReport:
    """Purge every personal and pseudonymized datum, certify it, compact, and prove nothing is left."""
    from crowd_platform.governance.privacy_scan import scan_for_hex_keys, scan_for_subscriber_values

    say = progress or (lambda message: None)
    needles = _collect_needles(settings)
    say(f"sampled {len(needles)} subscriber keys to search for after the purge (kept in memory only)")
    outcome = apply_retention(settings, dry_run=False, sunset=True, keep_aggregates=keep_aggregates,
                              actor=actor, purpose=purpose, run_id=run_id, progress=progress)
    # On object storage, landing, raw, quarantine, lake and outbox are objects under the storage
    # root: the proof covers the bucket prefix as well as the local disk.
    bucket = []
    if settings.is_remote:
        witness = str(settings.witness).rstrip("/") + "/"  # chain hashes have a key's shape; never personal
        bucket = [obj for obj in storage.files_under(settings.root) if not str(obj).startswith(witness)]
    say("scanning every remaining file under CROWD_HOME" + (f" and {len(bucket)} object(s) under {settings.root}" if bucket else ""))
    needle_hits = scan_for_subscriber_values([settings.home, *bucket], needles) if needles else []
    allowed, table_hits = _warehouse_hex_scan(settings)
    # Witness files and Dagster's own storage hold chain hashes / data versions of the same shape.
    roots = [p for p in settings.home.iterdir() if p.name not in {settings.witness.name, settings.dagster_home.name}]
    roots += bucket
    hex_hits = scan_for_hex_keys(roots, allowed)
    places = sorted({f"{hit.path} ({hit.where})" for hit in needle_hits})  # where, never which key
    report = SunsetReport(outcome, len(needles), len(needle_hits), hex_hits, table_hits, places)
    with connect(settings.warehouse_path) as connection:
        audit.append(connection, "sunset.verified" if report.clean else "sunset.verification_failed",
                     purpose=purpose or settings.purpose, actor=actor, object_kind="platform", run_id=run_id,
                     details={"keep_aggregates": keep_aggregates, "sampled_keys": len(needles), "needle_hits": len(needle_hits),
                              "hex_hits": sum(hex_hits.values()), "table_hits": sum(table_hits.values()),
                              "certificates": len(outcome.deletions)})
    return report
