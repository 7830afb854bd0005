-- Contract rule verdicts of the drops behind an alert: rule names and counts only.
SELECT drop_id, rule, engine, passed, unexpected_count
FROM check_results
WHERE list_contains($drop_ids, drop_id)
ORDER BY drop_id, rule
