-- Display name of an alert place: the district's name, or for a site alert (a physical place:
-- site_places) the finest-level district holding most of its sites' coverage.
SELECT name FROM (
    SELECT d.name, 0 AS preference, 1.0 AS weight
    FROM districts d
    WHERE $level <> 'site' AND d.level = $level AND d.district_code = $place_id
    UNION ALL
    SELECT d.name, 1 AS preference, sum(w.weight) AS weight
    FROM bts_district_weights w
    LEFT JOIN site_places sp ON sp.site_id = w.site_id
    JOIN districts d ON d.district_code = w.district_code AND d.level_rank = 0
    WHERE $level = 'site' AND coalesce(sp.place_id, w.site_id) = $place_id
    GROUP BY d.name
)
ORDER BY preference, weight DESC, name
LIMIT 1
