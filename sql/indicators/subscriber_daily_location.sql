-- One finest district per subscriber for local day $day (presence_events holds the windows of
-- that local day), FlowKit daily_location semantics:
--   last:  the district of the subscriber's last event of the day (ties on event time: larger
--          cell, as bts_presence_last);
--   modal: the district with most of the subscriber's events (ties: the district of the latest
--          event, then the larger cell).
-- Each event's district is its site's largest-weight district (indicator_site_district); events
-- on sites without weights are left out. Periods: 'day' (both rules) and, with rule
-- $flow_rule only, 'morning' and 'evening': events of windows whose local start time is in
-- [$morning_start, $morning_end) or [$evening_start, $evening_end) local hours ($zone).
INSERT INTO subscriber_daily_location (day, period, rule, operator, subscriber, site_id, district_code, run_id)
WITH events AS (
    SELECT e.operator, e.subscriber, e.site_id, s.district_code,
           {'t': e.event_time, 'r': e.cell_rank} AS moment,
           hour(timezone($zone, e.window_start)) * 60 + minute(timezone($zone, e.window_start)) AS local_minute
    FROM presence_events AS e
    JOIN indicator_site_district AS s ON s.operator = e.operator AND s.site_id = e.site_id
),
periods AS (
    SELECT 'day' AS period, * FROM events
    UNION ALL
    SELECT 'morning', * FROM events
    WHERE local_minute >= $morning_start * 60 AND local_minute < $morning_end * 60
    UNION ALL
    SELECT 'evening', * FROM events
    WHERE local_minute >= $evening_start * 60 AND local_minute < $evening_end * 60
),
per_district AS (
    SELECT period, operator, subscriber, district_code,
           count(*) AS events, max(moment) AS latest, arg_max(site_id, moment) AS site_id
    FROM periods
    GROUP BY period, operator, subscriber, district_code
),
last_rule AS (
    SELECT period, 'last' AS rule, operator, subscriber,
           arg_max({'site_id': site_id, 'district_code': district_code}, latest) AS place
    FROM per_district
    WHERE period = 'day' OR $flow_rule = 'last'
    GROUP BY period, operator, subscriber
),
modal_rule AS (
    SELECT period, 'modal' AS rule, operator, subscriber,
           arg_max({'site_id': site_id, 'district_code': district_code}, (events, latest)) AS place
    FROM per_district
    WHERE period = 'day' OR $flow_rule = 'modal'
    GROUP BY period, operator, subscriber
)
SELECT CAST($day AS DATE), period, rule, operator, subscriber, place.site_id, place.district_code, $run_id
FROM (SELECT * FROM last_rule UNION ALL SELECT * FROM modal_rule)
