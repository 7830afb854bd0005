-- Cells of an operator whose site serves any of the districts (weight > 0), valid at $at
-- (NULL: open versions only, so a decommissioned cell is never sent a broadcast).
SELECT DISTINCT r.cell_id
FROM bts_registry r
JOIN bts_district_weights w ON w.site_id = r.site_id AND w.scope = r.operator
JOIN district_hierarchy h ON h.district_code_finest = w.district_code
WHERE r.operator = $operator AND w.weight > 0 AND list_contains($codes, h.district_code)
  AND (CASE WHEN $at::TIMESTAMPTZ IS NULL THEN r.valid_to IS NULL
            ELSE r.valid_from <= $at::TIMESTAMPTZ AND (r.valid_to IS NULL OR r.valid_to > $at::TIMESTAMPTZ) END)
ORDER BY r.cell_id
