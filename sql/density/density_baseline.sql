-- Baseline used on UTC day $day_start, from data strictly before it. For a target window
-- on that day, an observation n days earlier at the same UTC time is the same local (WIB,
-- fixed offset) time of day; n divisible by 7 is also the same weekday.
--   weekly:    the previous $weeks weeks, same weekday and time of day, >= $min_obs values;
--   bootstrap: otherwise the previous $bootstrap_days days at the same time of day.
-- Observations on Indonesian public holidays ($holidays, local dates) are left out.
-- mad is the raw median absolute deviation (multiply by 1.4826 for a normal sigma).
INSERT INTO density_baseline (day, level, place_id, time_of_day, median, mad, n_obs, kind, run_id)
WITH observations AS (
    SELECT window_start, level, district_code AS place_id, people_estimate AS value
    FROM district_density
    WHERE window_start >= $lookback_start AND window_start < $day_start
    UNION ALL
    SELECT window_start, 'site', place_id, CAST(sum(subscribers) AS DOUBLE)
    FROM bts_presence
    WHERE place_level = 'site' AND window_start >= $lookback_start AND window_start < $day_start
    GROUP BY window_start, place_id
),
dated AS (
    SELECT
        level,
        place_id,
        value,
        date_diff('day', CAST(timezone('UTC', window_start) AS DATE),
                         CAST(timezone('UTC', CAST($day_start AS TIMESTAMPTZ)) AS DATE)) AS days_back,
        CAST(timezone($local_tz, window_start) AS DATE) AS local_date,
        hour(timezone($local_tz, window_start)) * 60 + minute(timezone($local_tz, window_start)) AS time_of_day
    FROM observations
),
kept AS (
    SELECT * FROM dated WHERE NOT list_contains(CAST($holidays AS DATE[]), local_date)
),
stats AS (
    SELECT
        level, place_id, time_of_day,
        count(*) FILTER (WHERE days_back % 7 = 0 AND days_back <= 7 * $weeks) AS weekly_n,
        median(value) FILTER (WHERE days_back % 7 = 0 AND days_back <= 7 * $weeks) AS weekly_median,
        mad(value) FILTER (WHERE days_back % 7 = 0 AND days_back <= 7 * $weeks) AS weekly_mad,
        count(*) FILTER (WHERE days_back <= $bootstrap_days) AS bootstrap_n,
        median(value) FILTER (WHERE days_back <= $bootstrap_days) AS bootstrap_median,
        mad(value) FILTER (WHERE days_back <= $bootstrap_days) AS bootstrap_mad
    FROM kept
    GROUP BY level, place_id, time_of_day
)
SELECT
    CAST(timezone('UTC', CAST($day_start AS TIMESTAMPTZ)) AS DATE),
    level,
    place_id,
    time_of_day,
    CASE WHEN weekly_n >= $min_obs THEN weekly_median ELSE bootstrap_median END,
    CASE WHEN weekly_n >= $min_obs THEN weekly_mad ELSE bootstrap_mad END,
    CASE WHEN weekly_n >= $min_obs THEN weekly_n ELSE bootstrap_n END,
    CASE WHEN weekly_n >= $min_obs THEN 'weekly' ELSE 'bootstrap' END,
    $run_id
FROM stats
WHERE weekly_n >= $min_obs OR bootstrap_n >= $min_obs
