-- Alert transitions in [$start, $end) that warrant a broadcast (opened, escalated), with the
-- alert's place and the severity the alert had right after the transition.
SELECT t.alert_id, t.window_start, t.transition, a.level, a.place_id, a.place_name,
       coalesce(s.severity, a.severity) AS severity, t.observed
FROM alert_transitions t
JOIN crowd_alerts a USING (alert_id)
LEFT JOIN alert_place_state s ON s.alert_id = t.alert_id AND s.window_start = t.window_start
WHERE t.window_start >= $start AND t.window_start < $end
  AND t.transition IN ('opened', 'escalated')
ORDER BY t.window_start, t.alert_id, t.transition
