-- Deletion certificates of the drops behind an alert (raw, lake, quarantine copies).
SELECT certificate_id, object_kind, object_id, deleted_at, policy, retention_period, verification
FROM deletion_certificates
WHERE list_contains($drop_ids, object_id) AND list_contains($object_kinds, object_kind)
ORDER BY deleted_at
