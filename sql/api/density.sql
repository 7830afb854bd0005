-- Published density of one level over [start, end). A suppressed row never carries a number,
-- whatever the table holds (defence in depth).
SELECT p.window_start, p.level, p.district_code, d.name AS district_name,
       CASE WHEN p.suppressed THEN NULL ELSE p.people_estimate END AS people_estimate,
       CASE WHEN p.suppressed THEN NULL ELSE p.density_per_km2 END AS density_per_km2,
       p.suppressed
FROM district_density_published AS p
LEFT JOIN districts AS d ON d.level = p.level AND d.district_code = p.district_code
WHERE p.level = $level AND p.window_start >= $start AND p.window_start < $end
ORDER BY p.window_start, p.district_code
