-- The accepted event drops (every feed of kind events) of a window range: the only files density
-- reads (never a lake glob).
SELECT drop_id, operator, window_start, lake_path, contract_version
FROM drops
WHERE coalesce(feed_kind, feed) = 'events'
  AND status = 'accepted'
  AND lake_path IS NOT NULL
  AND window_start >= $start
  AND window_start < $end
ORDER BY window_start, operator, drop_id
