-- The $limit newest windows up to $last_start in window_completeness (written by the density
-- step, docs/detection.md section 2a), newest first. Operator names and shares only; missing
-- includes the flagged operators (arrived well below their usual volume); missing_feeds names
-- each expected operator/feed not arrived.
SELECT window_start, expected_operators, arrived_operators, missing_operators,
       coalesce(flagged_operators, []::VARCHAR[]) AS flagged_operators,
       coalesce(missing_feeds, []::VARCHAR[]) AS missing_feeds,
       completeness, complete, latency_deadline
FROM window_completeness
WHERE window_start <= $last_start
ORDER BY window_start DESC
LIMIT $limit
