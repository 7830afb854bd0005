-- Cells per operator covering a site alert's physical place ($site_id is its place_id): the cells
-- of every site of the place (all operators, site_places) and of every site whose centre is within
-- $radius_m of the place's centre, valid at $at. Equirectangular distance: exact enough at a few
-- hundred metres.
WITH valid AS (
    SELECT r.*, coalesce(sp.place_id, r.site_id) AS place_id
    FROM bts_registry r
    LEFT JOIN site_places sp USING (site_id)
    WHERE r.valid_from <= $at AND (r.valid_to IS NULL OR r.valid_to > $at)
),
sites AS (
    SELECT site_id, any_value(place_id) AS place_id, avg(lon) AS lon, avg(lat) AS lat FROM valid GROUP BY site_id
),
centre AS (
    SELECT avg(lon) AS lon, avg(lat) AS lat FROM sites WHERE place_id = $site_id
),
near_sites AS (
    SELECT s.site_id
    FROM sites s, centre c
    WHERE s.place_id = $site_id
       OR 111320.0 * sqrt(power((s.lon - c.lon) * cos(radians(c.lat)), 2) + power(s.lat - c.lat, 2)) <= $radius_m
)
SELECT operator, list_sort(list_distinct(list(cell_id))) AS cell_ids
FROM valid
WHERE site_id IN (SELECT site_id FROM near_sites)
GROUP BY operator
ORDER BY operator
