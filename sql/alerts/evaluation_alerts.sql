-- Alerts for detection evaluation, with a site alert's position (its physical place's centre)
-- and its main kelurahan (the district its places' coverage weighs most in), oldest first.
WITH sites AS (
    SELECT r.site_id, coalesce(sp.place_id, r.site_id) AS place_id, avg(r.lon) AS lon, avg(r.lat) AS lat
    FROM bts_registry r LEFT JOIN site_places sp USING (site_id)
    GROUP BY r.site_id, coalesce(sp.place_id, r.site_id)
),
places AS (SELECT place_id, avg(lon) AS lon, avg(lat) AS lat FROM sites GROUP BY place_id),
main_district AS (
    SELECT s.place_id, arg_max(w.district_code, w.weight) AS kelurahan
    FROM bts_district_weights w JOIN sites s USING (site_id)
    GROUP BY s.place_id
)
SELECT a.alert_id, a.level, a.place_id, a.opened_window, p.lon, p.lat, m.kelurahan
FROM crowd_alerts a
LEFT JOIN places p ON a.level = 'site' AND p.place_id = a.place_id
LEFT JOIN main_district m ON a.level = 'site' AND m.place_id = a.place_id
ORDER BY a.opened_window
