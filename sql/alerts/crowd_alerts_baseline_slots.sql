-- Baseline slots (UTC day, local time of day) between $start and $end with rows at the alert
-- levels: a window whose slot has none is not evaluated (no comparable history of its day type,
-- e.g. a Saturday after weekday-only history, or the Saturday-local evening of a UTC Friday).
SELECT DISTINCT day, time_of_day
FROM density_baseline
WHERE day >= CAST(timezone('UTC', $start) AS DATE)
  AND day <= CAST(timezone('UTC', $end) AS DATE)
  AND list_contains($levels, level)
