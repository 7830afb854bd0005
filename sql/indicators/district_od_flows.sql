-- Origin-destination flows for local day $day with daily-location rule $flow_rule, at every level
-- (origin and destination at the same level, finest districts rolled up by district_ancestry):
--   consecutive_days: subscribers located on both $previous_day and $day (same operator and
--     pseudonym), origin = location on $previous_day, destination = on $day; only operators whose
--     drops of both days carry one and the same key id (indicator_operator_days): under a key
--     rotated in between, equal pseudonyms are not the same people's days (docs/indicators.md);
--   morning_evening: subscribers located in both windows of $day, origin = morning location.
-- Needs district_ancestry.
INSERT INTO district_od_flows (day, flow_kind, rule, level, origin_code, destination_code, subscribers, run_id)
WITH stable_operators AS (
    SELECT p.operator
    FROM indicator_operator_days AS p
    JOIN indicator_operator_days AS d ON d.operator = p.operator
    WHERE p.day = CAST($previous_day AS DATE) AND d.day = CAST($day AS DATE)
      AND len(p.key_ids) = 1 AND p.key_ids = d.key_ids
),
pairs AS (
    SELECT 'consecutive_days' AS flow_kind, o.district_code AS origin_finest, d.district_code AS destination_finest
    FROM subscriber_daily_location AS o
    JOIN subscriber_daily_location AS d ON d.operator = o.operator AND d.subscriber = o.subscriber
    WHERE o.day = CAST($previous_day AS DATE) AND o.period = 'day' AND o.rule = $flow_rule
      AND d.day = CAST($day AS DATE) AND d.period = 'day' AND d.rule = $flow_rule
      AND o.operator IN (SELECT operator FROM stable_operators)
    UNION ALL
    SELECT 'morning_evening', m.district_code, e.district_code
    FROM subscriber_daily_location AS m
    JOIN subscriber_daily_location AS e ON e.operator = m.operator AND e.subscriber = m.subscriber
    WHERE m.day = CAST($day AS DATE) AND m.period = 'morning' AND m.rule = $flow_rule
      AND e.day = CAST($day AS DATE) AND e.period = 'evening' AND e.rule = $flow_rule
),
counted AS (
    SELECT flow_kind, origin_finest, destination_finest, count(*) AS subscribers
    FROM pairs
    GROUP BY flow_kind, origin_finest, destination_finest
)
SELECT CAST($day AS DATE), c.flow_kind, $flow_rule, o.level, o.district_code, d.district_code, sum(c.subscribers), $run_id
FROM counted AS c
JOIN district_ancestry AS o ON o.finest_code = c.origin_finest
JOIN district_ancestry AS d ON d.finest_code = c.destination_finest AND d.level = o.level
GROUP BY c.flow_kind, o.level, o.district_code, d.district_code
