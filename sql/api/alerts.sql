-- Published alerts, optionally only those live at a window and / or in a state.
SELECT *
FROM crowd_alerts_published
WHERE (CAST($window AS TIMESTAMPTZ) IS NULL OR (opened_window <= CAST($window AS TIMESTAMPTZ) AND (closed_window IS NULL OR closed_window > CAST($window AS TIMESTAMPTZ))))
  AND (CAST($state AS VARCHAR) IS NULL OR state = CAST($state AS VARCHAR))
ORDER BY opened_window, alert_id
