-- Check: under one-place rules (last, modal) cells add up to their sites; under 'any' a site never
-- has more subscribers than its cells together. Scope: the rows of run $run_id, or all.
WITH scoped AS (
    SELECT b.* FROM bts_presence AS b
    WHERE NOT EXISTS (SELECT 1 FROM bts_presence WHERE run_id = $run_id) OR b.run_id = $run_id
),
totals AS (
    SELECT window_start, operator, location_rule,
           sum(subscribers) FILTER (WHERE place_level = 'cell') AS cells,
           sum(subscribers) FILTER (WHERE place_level = 'site') AS sites
    FROM scoped GROUP BY window_start, operator, location_rule
)
SELECT count(*),
       count(*) FILTER (WHERE (location_rule = 'any' AND sites > cells)
                           OR (location_rule <> 'any' AND sites <> cells))
FROM totals
