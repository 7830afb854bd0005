-- Subscribers per district whose daily location (rule last | modal) is there, on local day $day,
-- at every level: the finest district rolled up through district_ancestry, so levels add up.
-- Dense (0 rather than a missing row) for every district of every level on a day with any
-- located subscriber. Needs district_ancestry.
INSERT INTO district_daily_location (day, rule, level, district_code, subscribers, run_id)
WITH located AS (
    SELECT rule, district_code AS finest_code, count(*) AS subscribers
    FROM subscriber_daily_location
    WHERE day = CAST($day AS DATE) AND period = 'day'
    GROUP BY rule, district_code
),
rolled AS (
    SELECT l.rule, a.level, a.district_code, sum(l.subscribers) AS subscribers
    FROM located AS l
    JOIN district_ancestry AS a ON a.finest_code = l.finest_code
    GROUP BY l.rule, a.level, a.district_code
),
rules AS (
    SELECT DISTINCT rule FROM located
)
SELECT CAST($day AS DATE), r.rule, d.level, d.district_code, coalesce(x.subscribers, 0), $run_id
FROM districts AS d
CROSS JOIN rules AS r
LEFT JOIN rolled AS x ON x.rule = r.rule AND x.level = d.level AND x.district_code = d.district_code
