-- Alert transitions that warrant a broadcast (opened, escalated), with the alert's place and the
-- severity the alert had right after the transition: those of windows [$start, $end), and those
-- this run ($run_id) wrote for later windows when late data carried forward, if that alert is
-- still open (a warning about a crowd that has already dispersed helps nobody). The count an
-- operator receives is the place's people estimate as district_density_published shows it (NULL
-- where hidden, always for a site): the same value every other output shows.
SELECT t.alert_id, t.window_start, t.transition, a.level, a.place_id, a.place_name, a.opened_window,
       coalesce(s.severity, a.severity) AS severity, p.people_estimate AS observed
FROM alert_transitions t
JOIN crowd_alerts a USING (alert_id)
LEFT JOIN alert_place_state s ON s.alert_id = t.alert_id AND s.window_start = t.window_start
LEFT JOIN district_density_published p
    ON a.level <> 'site' AND p.level = a.level AND p.district_code = a.place_id AND p.window_start = t.window_start
WHERE t.transition IN ('opened', 'escalated')
  AND a.state <> 'retracted'
  AND ((t.window_start >= $start AND t.window_start < $end)
       OR (t.run_id = $run_id AND a.state IN ('open', 'escalated')))
ORDER BY t.window_start, t.alert_id, t.transition
