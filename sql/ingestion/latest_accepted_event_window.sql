-- The end of the latest window with an accepted event drop (any operator, any event feed): the
-- data's own clock, so a replayed or late backlog knows which local days it has seen to the end
-- (runner/orchestration.py, mobility indicators of complete local days only).
SELECT max(window_end) FROM drops WHERE status = 'accepted' AND coalesce(feed_kind, feed) <> 'cells'
