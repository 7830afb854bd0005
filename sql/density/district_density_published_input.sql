-- What k-anonymity decides on, per window and district: the smaller of the apportioned
-- subscriber count and the rounded people estimate, so neither is shown at or below k; and
-- whether an earlier version of the window already showed this very people estimate (known).
SELECT
    dd.window_start,
    dd.level,
    dd.district_code,
    d.parent_code,
    least(dd.subscribers, round(dd.people_estimate)) AS value,
    round(dd.people_estimate)::BIGINT AS people_estimate,
    dd.density_per_km2,
    EXISTS (SELECT 1 FROM district_density_shown AS s
            WHERE s.window_start = dd.window_start AND s.level = dd.level AND s.district_code = dd.district_code
              AND s.people_estimate = round(dd.people_estimate)::BIGINT) AS known
FROM district_density AS dd
JOIN districts AS d ON d.district_code = dd.district_code AND d.level = dd.level
WHERE dd.window_start >= $start AND dd.window_start < $end
ORDER BY dd.window_start, d.level_rank DESC, dd.district_code
