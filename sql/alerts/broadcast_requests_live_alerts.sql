-- Alerts live at $at (opened by then, not closed before it, not retracted), other than
-- $alert_id; with $earlier_only, only those ahead of ($opened_window, $alert_id) in opening order.
-- Their places' cells are already warned: a later alert over the same cells does not warn the
-- same people again, and a retraction does not tell people to disregard a warning another live
-- alert still stands behind.
SELECT alert_id, level, place_id, opened_window
FROM crowd_alerts
WHERE state <> 'retracted'
  AND alert_id <> $alert_id
  AND opened_window <= $at
  AND (closed_window IS NULL OR closed_window >= $at)
  AND (NOT $earlier_only OR (opened_window, alert_id) < ($opened_window, $alert_id))
ORDER BY opened_window, alert_id
