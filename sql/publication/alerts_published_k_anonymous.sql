-- Check of the alert publication: rows, evidence at or below $k, evidence that differs from what
-- district_density_published shows for the same place and window (one output showing what
-- another hides), and site evidence (never published).
WITH evidence AS (
    SELECT a.level, a.place_id, a.last_window AS window_start, a.people_estimate FROM crowd_alerts_published AS a
    UNION ALL
    SELECT a.level, a.place_id, t.window_start, t.people_estimate
    FROM alert_transitions_published AS t JOIN crowd_alerts_published AS a USING (alert_id)
)
SELECT count(*) AS rows,
       count(*) FILTER (WHERE e.people_estimate <= $k) AS at_or_below_k,
       count(*) FILTER (WHERE e.people_estimate IS NOT NULL AND e.level <> 'site'
                        AND p.people_estimate IS DISTINCT FROM e.people_estimate) AS differs_from_density,
       count(*) FILTER (WHERE e.people_estimate IS NOT NULL AND e.level = 'site') AS site_counts
FROM evidence AS e
LEFT JOIN district_density_published AS p
    ON p.level = e.level AND p.district_code = e.place_id AND p.window_start = e.window_start
