-- An alert's place over its windows, as published (values and suppression from
-- district_density_published); the internal table contributes identifiers only (drop ids, run).
SELECT p.window_start, p.people_estimate, p.density_per_km2, p.suppression, p.completeness, d.drop_ids, d.run_id
FROM district_density_published AS p
JOIN district_density AS d USING (window_start, level, district_code)
WHERE p.level = $level AND p.district_code = $place_id AND p.window_start BETWEEN $first AND $last
ORDER BY p.window_start
