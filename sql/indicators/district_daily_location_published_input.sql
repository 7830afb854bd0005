-- Input of district_daily_location_published for local day $day: every row with its parent
-- district (one additive hierarchy per rule).
SELECT l.rule, l.level, l.district_code, d.parent_code, l.subscribers AS value
FROM district_daily_location AS l
JOIN districts AS d ON d.district_code = l.district_code AND d.level = l.level
WHERE l.day = CAST($day AS DATE)
ORDER BY l.rule, d.level_rank, l.district_code
