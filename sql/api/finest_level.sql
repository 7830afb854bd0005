-- The finest level that has published density (CAMARA cells).
SELECT p.level
FROM district_density_published AS p
JOIN districts AS d ON d.level = p.level AND d.district_code = p.district_code
GROUP BY p.level
ORDER BY min(d.level_rank), p.level
LIMIT 1
