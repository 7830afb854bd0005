-- Cells per operator covering a district alert: every finest-level district under
-- ($level, $district_code) (itself if finest), the sites with weight > 0 there (weights of
-- that operator, or computed for all operators), and those sites' cells valid at $at.
WITH RECURSIVE descendants(district_code, level_rank) AS (
    SELECT district_code, level_rank FROM districts WHERE district_code = $district_code AND level = $level
    UNION
    SELECT d.district_code, d.level_rank FROM districts d JOIN descendants p ON d.parent_code = p.district_code
),
covering_sites AS (
    SELECT DISTINCT w.site_id, w.scope
    FROM bts_district_weights w
    JOIN descendants f ON f.district_code = w.district_code AND f.level_rank = 0
    WHERE w.weight > 0
)
SELECT r.operator, list_sort(list_distinct(list(r.cell_id))) AS cell_ids
FROM bts_registry r
JOIN covering_sites s ON s.site_id = r.site_id AND (s.scope = r.operator OR s.scope = 'all')
WHERE r.valid_from <= $at AND (r.valid_to IS NULL OR r.valid_to > $at)
GROUP BY r.operator
ORDER BY r.operator
