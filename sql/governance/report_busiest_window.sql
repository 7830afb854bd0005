-- The auditor report's map: the busiest published window of the data period [$lo, $hi), by the
-- sum of the people district_density_published shows at the finest level (hidden cells count
-- for nothing: the choice uses published values only). Earliest window on a tie.
SELECT p.window_start, sum(p.people_estimate) AS people_shown
FROM district_density_published AS p
WHERE p.window_start >= $lo AND p.window_start < $hi
  AND p.level = (SELECT level FROM districts ORDER BY level_rank LIMIT 1)
  AND NOT p.suppressed AND p.people_estimate IS NOT NULL
GROUP BY p.window_start
ORDER BY people_shown DESC, p.window_start
LIMIT 1
