-- Alert transitions that warrant a broadcast (opened, escalated), with the alert's place and the
-- severity the alert had right after the transition: those of windows [$start, $end), and those
-- this run ($run_id) wrote for later windows when late data carried forward, if that alert is
-- still open (a warning about a crowd that has already dispersed helps nobody).
SELECT t.alert_id, t.window_start, t.transition, a.level, a.place_id, a.place_name,
       coalesce(s.severity, a.severity) AS severity, t.observed
FROM alert_transitions t
JOIN crowd_alerts a USING (alert_id)
LEFT JOIN alert_place_state s ON s.alert_id = t.alert_id AND s.window_start = t.window_start
WHERE t.transition IN ('opened', 'escalated')
  AND a.state <> 'retracted'
  AND ((t.window_start >= $start AND t.window_start < $end)
       OR (t.run_id = $run_id AND a.state IN ('open', 'escalated')))
ORDER BY t.window_start, t.alert_id, t.transition
