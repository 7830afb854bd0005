"""Certificates are written "pending" and only checked after compaction, because a deleted
value is gone only once the rebuilt warehouse file no longer holds it; the check's result is
what the certificate finally says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crowd_platform.common import audit
from crowd_platform.common.settings import Settings
from crowd_platform.common.warehouse import connect, transaction
from crowd_platform.governance.privacy_scan import contains_any
from crowd_platform.governance.retention.plan import RetentionOutcome


def _file_in_warehouse(path: Path, needles: list[str]) -> bool:
    if not needles:
        return False
    return any(candidate.exists() and contains_any(candidate.read_bytes(), needles)
               for candidate in (path, Path(f"{path}.wal")))


def verify_and_record(settings: Settings, outcome: RetentionOutcome, actor: str, purpose: str, run_id: str | None) -> None:
    """After compaction: files absent, rows gone, sampled keys absent from the warehouse bytes."""
    sampled = [key for d in outcome.deletions for key in d.sample_keys]
    keys_in_warehouse = _file_in_warehouse(settings.warehouse_path, sampled)
    compacted = outcome.compaction is not None
    with connect(settings.warehouse_path) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        with transaction(connection):
            for deletion in outcome.deletions:
                if deletion.table:
                    remaining = connection.execute(
                        f'SELECT count(*) FROM "{deletion.table}" WHERE {deletion.where_sql}', deletion.where_params
                    ).fetchone()[0]
                    if remaining:
                        deletion.verification = f"failed: {remaining} rows remain"
                    else:
                        deletion.verification = "verified: 0 rows remain" + ("; warehouse rebuilt" if compacted else "")
                else:
                    left = [p for p in deletion.paths if p.exists()]
                    if left:
                        deletion.verification = f"failed: {len(left)} path(s) still present"
                    elif deletion.sample_keys and keys_in_warehouse:
                        deletion.verification = "failed: sampled keys found in the warehouse file"
                    else:
                        deletion.verification = "verified: absent" + (
                            f"; {len(deletion.sample_keys)} sampled keys not found in compacted warehouse" if deletion.sample_keys else "")
                connection.execute("UPDATE deletion_certificates SET verification = ? WHERE certificate_id = ?",
                                   [deletion.verification, deletion.certificate_id])
            connection.execute(
                "UPDATE deletion_certificates SET verification = 'verified: 0 rows remain; warehouse rebuilt' "
                "WHERE verification = 'pending: compaction' AND object_id LIKE 'audit_log/%'"
            )
            audit.append(connection, f"{outcome.mode}.completed", purpose=purpose, actor=actor, object_kind="retention_run",
                         run_id=run_id, details={"as_of": outcome.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                 "certificates": len(outcome.deletions), "failed": len(outcome.failed),
                                                 "by_kind": outcome.counts(), "drops_marked_deleted": outcome.drops_marked_deleted,
                                                 "compaction": outcome.compaction, "notes": outcome.notes})


def outcome_summary(outcome: RetentionOutcome) -> dict[str, Any]:
    """Counts only (safe for Dagster metadata and logs)."""
    return {
        "as_of": outcome.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": outcome.mode,
        "dry_run": outcome.dry_run,
        "objects": len(outcome.deletions),
        "by_kind": outcome.counts(),
        "rows": sum(d.rows or 0 for d in outcome.deletions if d.table),
        "bytes": sum(d.bytes or 0 for d in outcome.deletions),
        "drops_marked_deleted": outcome.drops_marked_deleted,
        "failed_verification": len(outcome.failed),
        "compaction": outcome.compaction,
        "notes": outcome.notes,
    }


def summary_json(outcome: RetentionOutcome) -> str:
    return json.dumps(outcome_summary(outcome), sort_keys=True, default=str)


def deletion_certificates(connection, object_kind: str | None = None, object_id: str | None = None) -> list[dict[str, Any]]:
    """Certificates, oldest first, optionally of one kind of object or one object (`audit deletions`)."""
    from crowd_platform.common.warehouse import fetch_dicts

    connection.execute("SET TimeZone = 'UTC'")
    return fetch_dicts(connection,
                       "SELECT * FROM deletion_certificates WHERE ($kind IS NULL OR object_kind = $kind) "
                       "AND ($object_id IS NULL OR object_id = $object_id) ORDER BY deleted_at, certificate_id",
                       {"kind": object_kind, "object_id": object_id})
