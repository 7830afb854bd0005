-- The usual volume of an operator feed at a slot: the last $history accepted drops of the same
-- day type and local time of day before $window_start (not flagged themselves), newest first.
SELECT p.rows, p.subscribers, p.cells
FROM drop_profiles p
JOIN drops d USING (drop_id)
WHERE p.operator = $operator AND p.feed = $feed AND p.day_type = $day_type AND p.time_of_day = $time_of_day
  AND p.window_start < $window_start
  AND d.status IN ('accepted', 'deleted') AND d.volume_flag IS NULL
ORDER BY p.window_start DESC
LIMIT $history
