-- The windows of [$start, $end) for which each operator delivered a drop of each of its event
-- feeds (kind events; same meaning of delivered as freshness_last_drops.sql).
SELECT DISTINCT operator, feed, window_start
FROM drops
WHERE coalesce(feed_kind, feed) = 'events'
  AND window_start >= $start AND window_start < $end
  AND (status = 'accepted'
       OR (status = 'deleted' AND lake_path IS NOT NULL)
       OR ($include_staged AND status = 'received' AND validated_at IS NOT NULL))
ORDER BY operator, feed, window_start
