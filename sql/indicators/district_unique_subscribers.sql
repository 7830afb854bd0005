-- Unique subscribers per district on local day $day (grain 'day') and per local hour of the
-- window start ($zone; grain 'hour'), at every level. The definition of district_presence_daily
-- (sql/density/district_presence_daily.sql), which grain 'day' reproduces exactly: a subscriber
-- seen at sites s1..sn is in district d with probability 1 - prod(1 - w(si, d)), w at coarser
-- levels the sum of the site's weights over d's finest units; the district value is the sum of
-- these probabilities (each subscriber at most once per district; levels not additive). Dense:
-- every district for the day, and for every hour with any event. Needs presence_events,
-- district_ancestry and effective_district_weights.
INSERT INTO district_unique_subscribers (day, grain, hour, level, district_code, subscribers, run_id)
WITH visits AS (
    SELECT operator, subscriber, site_id, hour(timezone($zone, window_start)) AS hour
    FROM presence_events
    GROUP BY operator, subscriber, site_id, hour(timezone($zone, window_start))
),
site_weights AS (
    SELECT w.operator, w.site_id, a.level, a.district_code, least(sum(w.weight), 1.0) AS weight
    FROM effective_district_weights AS w
    JOIN district_ancestry AS a ON a.finest_code = w.district_code
    GROUP BY w.operator, w.site_id, a.level, a.district_code
),
daily_visits AS (
    SELECT DISTINCT operator, subscriber, site_id FROM visits
),
daily AS (
    SELECT s.level, s.district_code, sum(probability) AS subscribers
    FROM (
        SELECT v.operator, v.subscriber, s.level, s.district_code, 1 - product(1 - s.weight) AS probability
        FROM daily_visits AS v
        JOIN site_weights AS s ON s.operator = v.operator AND s.site_id = v.site_id
        GROUP BY v.operator, v.subscriber, s.level, s.district_code
    ) AS s
    GROUP BY s.level, s.district_code
),
hourly AS (
    SELECT p.hour, p.level, p.district_code, sum(p.probability) AS subscribers
    FROM (
        SELECT v.hour, v.operator, v.subscriber, s.level, s.district_code, 1 - product(1 - s.weight) AS probability
        FROM visits AS v
        JOIN site_weights AS s ON s.operator = v.operator AND s.site_id = v.site_id
        GROUP BY v.hour, v.operator, v.subscriber, s.level, s.district_code
    ) AS p
    GROUP BY p.hour, p.level, p.district_code
),
slots AS (
    SELECT 'day' AS grain, CAST(NULL AS INTEGER) AS hour
    UNION ALL
    SELECT DISTINCT 'hour', CAST(hour AS INTEGER) FROM visits
)
SELECT CAST($day AS DATE), t.grain, t.hour, d.level, d.district_code,
       coalesce(CASE WHEN t.grain = 'day' THEN y.subscribers ELSE h.subscribers END, 0), $run_id
FROM slots AS t
CROSS JOIN districts AS d
LEFT JOIN daily AS y ON t.grain = 'day' AND y.level = d.level AND y.district_code = d.district_code
LEFT JOIN hourly AS h ON t.grain = 'hour' AND h.hour = t.hour AND h.level = d.level AND h.district_code = d.district_code
