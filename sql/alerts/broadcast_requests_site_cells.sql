-- Cells per operator covering a site alert: the site's own cells and those of every site
-- (any operator) whose centre is within $radius_m of it, valid at $at. Equirectangular
-- distance: exact enough at a few hundred metres.
WITH valid AS (
    SELECT * FROM bts_registry WHERE valid_from <= $at AND (valid_to IS NULL OR valid_to > $at)
),
sites AS (
    SELECT site_id, avg(lon) AS lon, avg(lat) AS lat FROM valid GROUP BY site_id
),
centre AS (
    SELECT lon, lat FROM sites WHERE site_id = $site_id
),
near_sites AS (
    SELECT s.site_id
    FROM sites s, centre c
    WHERE s.site_id = $site_id
       OR 111320.0 * sqrt(power((s.lon - c.lon) * cos(radians(c.lat)), 2) + power(s.lat - c.lat, 2)) <= $radius_m
)
SELECT operator, list_sort(list_distinct(list(cell_id))) AS cell_ids
FROM valid
WHERE site_id IN (SELECT site_id FROM near_sites)
GROUP BY operator
ORDER BY operator
