-- Days (UTC) in [$start, $end] for which density_baseline has rows at the alert levels:
-- windows of other days are not evaluated (no baseline, no judgement).
SELECT DISTINCT day
FROM density_baseline
WHERE day >= CAST(timezone('UTC', $start) AS DATE)
  AND day <= CAST(timezone('UTC', $end) AS DATE)
  AND list_contains($levels, level)
