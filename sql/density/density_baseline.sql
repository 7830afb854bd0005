-- Baseline used on UTC day $day_start, from data strictly before it. For a target window
-- on that day, an observation n days earlier at the same UTC time is the same local ($local_tz,
-- density.local_timezone; fixed offset) time of day, on the local date n days before the target's
-- local date (a UTC day's windows fall on two local dates: at UTC+7, 07:00 .. 06:45 the next day).
-- Baselines by day type (docs/decisions/012): every local date is a weekday (Mon-Fri),
-- saturday, sunday or holiday ($holidays: public holidays and configured extra dates, local
-- dates of $first_date .. $last_date); an observation counts only if its local date has the
-- same day type as the target's local date. Types never share a baseline.
--   weekly:    the previous $weeks weeks, same weekday and time of day, >= $min_obs values;
--   bootstrap: otherwise the same time of day on the $bootstrap_days most recent earlier
--              local dates of the same day type within the $lookback_days-day lookback.
-- No row when neither reaches $min_obs. day_type records the target's type.
-- mad is the raw median absolute deviation (multiply by 1.4826 for a normal sigma).
INSERT INTO density_baseline (day, level, place_id, time_of_day, median, mad, n_obs, kind, day_type, run_id)
WITH calendar AS (
    SELECT
        CAST(d AS DATE) AS local_date,
        CASE
            WHEN list_contains(CAST($holidays AS DATE[]), CAST(d AS DATE)) THEN 'holiday'
            WHEN isodow(d) = 6 THEN 'saturday'
            WHEN isodow(d) = 7 THEN 'sunday'
            ELSE 'weekday'
        END AS day_type
    FROM range(CAST($first_date AS TIMESTAMP), CAST($last_date AS TIMESTAMP) + INTERVAL 1 DAY, INTERVAL 1 DAY) AS t(d)
),
comparable AS (
    -- Earlier local dates of the target's day type within the lookback, most recent first.
    SELECT
        target.local_date AS target_date,
        target.day_type,
        history.local_date AS history_date,
        row_number() OVER (PARTITION BY target.local_date ORDER BY history.local_date DESC) AS recency
    FROM calendar AS target
    JOIN calendar AS history
      ON history.day_type = target.day_type
     AND history.local_date < target.local_date
     AND history.local_date >= target.local_date - CAST($lookback_days AS INTEGER)
),
observations AS (
    SELECT window_start, level, district_code AS place_id, people_estimate AS value
    FROM district_density
    WHERE window_start >= $lookback_start AND window_start < $day_start
    UNION ALL
    -- Sites: the physical place (co-located sites of all operators, site_places), all operators' subscribers.
    SELECT b.window_start, 'site', coalesce(sp.place_id, b.place_id), CAST(sum(b.subscribers) AS DOUBLE)
    FROM bts_presence AS b
    LEFT JOIN site_places AS sp ON sp.site_id = b.place_id
    WHERE b.place_level = 'site' AND b.window_start >= $lookback_start AND b.window_start < $day_start
    GROUP BY b.window_start, coalesce(sp.place_id, b.place_id)
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
    -- Only observations whose local date has the day type of the target's local date.
    SELECT d.level, d.place_id, d.value, d.days_back, d.time_of_day, c.day_type, c.recency
    FROM dated AS d
    JOIN comparable AS c
      ON c.history_date = d.local_date
     AND c.target_date = d.local_date + CAST(d.days_back AS INTEGER)
),
stats AS (
    SELECT
        level, place_id, time_of_day, day_type,
        count(*) FILTER (WHERE days_back % 7 = 0 AND days_back <= 7 * $weeks) AS weekly_n,
        median(value) FILTER (WHERE days_back % 7 = 0 AND days_back <= 7 * $weeks) AS weekly_median,
        mad(value) FILTER (WHERE days_back % 7 = 0 AND days_back <= 7 * $weeks) AS weekly_mad,
        count(*) FILTER (WHERE recency <= $bootstrap_days) AS bootstrap_n,
        median(value) FILTER (WHERE recency <= $bootstrap_days) AS bootstrap_median,
        mad(value) FILTER (WHERE recency <= $bootstrap_days) AS bootstrap_mad
    FROM kept
    GROUP BY level, place_id, time_of_day, day_type
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
    day_type,
    $run_id
FROM stats
WHERE weekly_n >= $min_obs OR bootstrap_n >= $min_obs
