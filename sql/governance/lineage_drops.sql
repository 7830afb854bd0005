-- Drops behind an alert (audit trace): identity, contract and status; never their content.
SELECT drop_id, operator, feed, sha256, window_start, delivery, contract_id, contract_version, status,
       received_at, run_id, superseded_by
FROM drops
WHERE list_contains($drop_ids, drop_id)
ORDER BY window_start, operator
