-- crowd_alerts input: per window [$start, $end) and place, the observed value and its baseline
-- for the same day and local time of day ($local_tz: density.local_timezone, as density_baseline
-- computes time_of_day). Districts: people_estimate at the configured levels; sites: subscribers
-- of every operator at the physical place.
-- Baseline day = UTC date of the window, as density_baseline's daily partitions are UTC days.
WITH window_drops AS (
    SELECT window_start, list_sort(list_distinct(flatten(list(coalesce(drop_ids, []))))) AS drop_ids
    FROM district_density
    WHERE window_start >= $start AND window_start < $end
    GROUP BY window_start
),
district_observed AS (
    SELECT window_start, level, district_code AS place_id, people_estimate AS observed, drop_ids
    FROM district_density
    WHERE window_start >= $start AND window_start < $end AND list_contains($levels, level)
),
site_observed AS (
    -- A site alert is about a physical place: co-located sites of all operators (site_places).
    SELECT p.window_start, 'site' AS level, coalesce(sp.place_id, p.place_id) AS place_id,
           sum(p.subscribers)::DOUBLE AS observed, any_value(w.drop_ids) AS drop_ids
    FROM bts_presence p
    LEFT JOIN site_places sp ON sp.site_id = p.place_id
    LEFT JOIN window_drops w USING (window_start)
    WHERE $include_sites AND p.place_level = 'site' AND p.window_start >= $start AND p.window_start < $end
    GROUP BY p.window_start, coalesce(sp.place_id, p.place_id)
),
observed AS (
    SELECT * FROM district_observed
    UNION ALL
    SELECT * FROM site_observed
)
SELECT o.window_start, o.level, o.place_id, o.observed, b.median, b.mad, o.drop_ids
FROM observed o
JOIN density_baseline b
  ON b.level = o.level
 AND b.place_id = o.place_id
 AND b.day = CAST(timezone('UTC', o.window_start) AS DATE)
 AND b.time_of_day = hour(timezone($local_tz, o.window_start)) * 60 + minute(timezone($local_tz, o.window_start))
WHERE b.median IS NOT NULL
-- One baseline per place and slot; prefer the weekly one if a bootstrap row is also there.
QUALIFY row_number() OVER (PARTITION BY o.window_start, o.level, o.place_id
                           ORDER BY (b.kind = 'weekly') DESC, b.n_obs DESC) = 1
ORDER BY o.window_start, o.level, o.place_id
