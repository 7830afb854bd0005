-- Per operator and event feed (kind events), its newest delivered drop among windows ended by
-- $until (all windows when $until is NULL): the window and when the drop was received.
-- Delivered = accepted (or accepted and since deleted by retention: lake_path kept); with
-- $include_staged also a drop validated in staging and waiting for publish (inside a run, before
-- staged_events).
SELECT operator,
       feed,
       max(window_start) AS last_window_start,
       arg_max(received_at, window_start) AS last_received_at
FROM drops
WHERE coalesce(feed_kind, feed) = 'events'
  AND ($until::TIMESTAMPTZ IS NULL OR window_end <= $until::TIMESTAMPTZ)
  AND (status = 'accepted'
       OR (status = 'deleted' AND lake_path IS NOT NULL)
       OR ($include_staged AND status = 'received' AND validated_at IS NOT NULL))
GROUP BY operator, feed
ORDER BY operator, feed
