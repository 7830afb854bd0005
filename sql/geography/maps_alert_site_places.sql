-- Where a site alert's place is drawn: the place's centre from site_places, else (a site that
-- is its own place, or site_places not built yet) the mean position of the site's cells in
-- bts_registry. Site positions are public (cell lists); no count is read here.
WITH wanted AS (SELECT unnest($place_ids::VARCHAR[]) AS place_id),
places AS (
    SELECT place_id, avg(lon) AS lon, avg(lat) AS lat FROM site_places
    WHERE place_id IN (SELECT place_id FROM wanted) GROUP BY place_id
),
sites AS (
    SELECT site_id AS place_id, avg(lon) AS lon, avg(lat) AS lat FROM bts_registry
    WHERE site_id IN (SELECT place_id FROM wanted) AND site_id NOT IN (SELECT place_id FROM places)
    GROUP BY site_id
)
SELECT place_id, lon, lat FROM places
UNION ALL
SELECT place_id, lon, lat FROM sites
ORDER BY place_id
