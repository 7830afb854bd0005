-- Rebuild of alert_transitions_published (the caller deletes first): each transition with the
-- place's published people estimate of that window (NULL where hidden, always for a site).
INSERT INTO alert_transitions_published (alert_id, window_start, transition, people_estimate, evidence_suppressed, run_id)
SELECT t.alert_id, t.window_start, t.transition, p.people_estimate, p.people_estimate IS NULL, t.run_id
FROM alert_transitions AS t
JOIN crowd_alerts AS a USING (alert_id)
LEFT JOIN district_density_published AS p
    ON a.level <> 'site' AND p.level = a.level AND p.district_code = a.place_id AND p.window_start = t.window_start
