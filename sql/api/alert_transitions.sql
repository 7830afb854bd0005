-- Published transitions (evidence) of one alert, in order.
SELECT window_start, transition,
       CASE WHEN evidence_suppressed THEN NULL ELSE people_estimate END AS people_estimate,
       evidence_suppressed
FROM alert_transitions_published
WHERE alert_id = $alert_id
ORDER BY window_start, transition
