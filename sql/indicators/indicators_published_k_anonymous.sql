-- Check: the three published indicator tables of the local days of run $run_id (or every day)
-- never show a count at or below $k, never show a suppressed row's count, and never leave exactly
-- one hidden child under a shown parent district, nor exactly one hidden flow under a shown
-- origin or destination total. One row of counts.
WITH days AS (
    SELECT DISTINCT day FROM subscriber_daily_location WHERE run_id = $run_id
    UNION SELECT DISTINCT day FROM district_unique_subscribers WHERE run_id = $run_id
    UNION SELECT DISTINCT day FROM district_daily_location WHERE run_id = $run_id
    UNION SELECT DISTINCT day FROM district_od_flows WHERE run_id = $run_id
),
scope AS (
    SELECT day FROM days
    UNION ALL
    SELECT DISTINCT day FROM district_unique_subscribers_published WHERE NOT EXISTS (SELECT 1 FROM days)
    UNION ALL
    SELECT DISTINCT day FROM district_daily_location_published WHERE NOT EXISTS (SELECT 1 FROM days)
    UNION ALL
    SELECT DISTINCT day FROM district_od_flows_published WHERE NOT EXISTS (SELECT 1 FROM days)
),
shown AS (
    SELECT 'unique' AS source, day, grain || coalesce(CAST(hour AS VARCHAR), '') AS part, level, district_code,
           subscribers, suppressed
    FROM district_unique_subscribers_published WHERE day IN (SELECT day FROM scope)
    UNION ALL
    SELECT 'location', day, rule, level, district_code, subscribers, suppressed
    FROM district_daily_location_published WHERE day IN (SELECT day FROM scope)
),
flows AS (
    SELECT * FROM district_od_flows_published WHERE day IN (SELECT day FROM scope)
),
district_groups AS (
    SELECT s.source, s.day, s.part, d.parent_code, count(*) FILTER (WHERE s.suppressed) AS hidden
    FROM shown AS s
    JOIN districts AS d ON d.district_code = s.district_code AND d.level = s.level
    WHERE d.parent_code IS NOT NULL
    GROUP BY ALL
),
single_hidden_children AS (
    SELECT count(*) AS n
    FROM district_groups AS g
    JOIN shown AS p ON p.source = g.source AND p.day = g.day AND p.part = g.part AND p.district_code = g.parent_code
    WHERE g.hidden = 1 AND NOT p.suppressed
),
single_hidden_flows AS (
    SELECT count(*) AS n
    FROM flows AS t
    WHERE t.total IS NOT NULL AND NOT t.suppressed
      AND (SELECT count(*) FROM flows AS f
           WHERE f.total IS NULL AND f.suppressed AND f.day = t.day AND f.flow_kind = t.flow_kind
             AND f.rule = t.rule AND f.level = t.level
             AND ((t.total = 'origin' AND f.origin_code = t.origin_code)
               OR (t.total = 'destination' AND f.destination_code = t.destination_code))) = 1
)
SELECT
    (SELECT count(*) FROM shown) + (SELECT count(*) FROM flows),
    (SELECT count(*) FROM shown WHERE NOT suppressed AND (subscribers IS NULL OR subscribers <= $k))
      + (SELECT count(*) FROM flows WHERE NOT suppressed AND (subscribers IS NULL OR subscribers <= $k)),
    (SELECT count(*) FROM shown WHERE suppressed AND subscribers IS NOT NULL)
      + (SELECT count(*) FROM flows WHERE suppressed AND subscribers IS NOT NULL),
    (SELECT n FROM single_hidden_children) + (SELECT n FROM single_hidden_flows)
