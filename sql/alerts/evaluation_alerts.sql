-- Alerts for detection evaluation, with a site alert's position and its main kelurahan
-- (the district its coverage weighs most in), oldest first.
WITH sites AS (SELECT site_id, avg(lon) AS lon, avg(lat) AS lat FROM bts_registry GROUP BY site_id),
main_district AS (
    SELECT site_id, arg_max(district_code, weight) AS kelurahan FROM bts_district_weights GROUP BY site_id
)
SELECT a.alert_id, a.level, a.place_id, a.opened_window, s.lon, s.lat, m.kelurahan
FROM crowd_alerts a
LEFT JOIN sites s ON a.level = 'site' AND s.site_id = a.place_id
LEFT JOIN main_district m ON a.level = 'site' AND m.site_id = a.place_id
ORDER BY a.opened_window
