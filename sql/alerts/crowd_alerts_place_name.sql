-- Display name of an alert place: the district's name, or for a site the finest-level
-- district holding most of its coverage.
SELECT name FROM (
    SELECT d.name, 0 AS preference, 1.0 AS weight
    FROM districts d
    WHERE $level <> 'site' AND d.level = $level AND d.district_code = $place_id
    UNION ALL
    SELECT d.name, 1 AS preference, w.weight
    FROM bts_district_weights w
    JOIN districts d ON d.district_code = w.district_code AND d.level_rank = 0
    WHERE $level = 'site' AND w.site_id = $place_id
)
ORDER BY preference, weight DESC, name
LIMIT 1
