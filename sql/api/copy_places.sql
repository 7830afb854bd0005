-- Location of the physical places that site alerts name (public cell positions, centre of the place).
CREATE TABLE main.places AS
SELECT place_id, avg(lon) AS lon, avg(lat) AS lat
FROM wh.main.site_places
WHERE place_id IN (SELECT place_id FROM main.crowd_alerts_published WHERE level = 'site')
GROUP BY place_id
