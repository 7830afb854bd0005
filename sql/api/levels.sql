-- Published levels, finest first (rank from the public geography).
SELECT p.level, min(d.level_rank) AS level_rank, count(DISTINCT p.district_code) AS districts
FROM district_density_published AS p
LEFT JOIN districts AS d ON d.level = p.level AND d.district_code = p.district_code
GROUP BY p.level
ORDER BY level_rank NULLS LAST, p.level
