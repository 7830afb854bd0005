-- Per evaluated UTC day: windows evaluated, alerts opened, and of those at district levels.
WITH evaluated AS (
    SELECT CAST(timezone('UTC', window_start) AS DATE) AS day, count(*) AS windows
    FROM alert_evaluations WHERE evaluated GROUP BY 1
),
opened AS (
    SELECT CAST(timezone('UTC', opened_window) AS DATE) AS day, count(*) AS alerts,
           count(*) FILTER (WHERE level <> 'site') AS district_alerts
    FROM crowd_alerts GROUP BY 1
)
SELECT e.day, e.windows, coalesce(o.alerts, 0), coalesce(o.district_alerts, 0)
FROM evaluated e LEFT JOIN opened o USING (day)
ORDER BY e.day
