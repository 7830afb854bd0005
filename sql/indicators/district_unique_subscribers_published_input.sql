-- Input of district_unique_subscribers_published for local day $day: every row with its parent
-- district (one hierarchy per grain and hour) and the rounded count that is shown and decides.
SELECT u.grain, u.hour, u.level, u.district_code, d.parent_code, CAST(round(u.subscribers) AS BIGINT) AS value
FROM district_unique_subscribers AS u
JOIN districts AS d ON d.district_code = u.district_code AND d.level = u.level
WHERE u.day = CAST($day AS DATE)
ORDER BY u.grain, u.hour, d.level_rank, u.district_code
