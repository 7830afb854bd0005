-- Check: district_density_published never shows a value at or below $k, shows density only with
-- its count, and never leaves a single hidden child under a shown parent (recoverable by
-- subtraction). Scope: the windows of run $run_id, or every window.
WITH windows AS (
    SELECT DISTINCT dd.window_start FROM district_density AS dd
    WHERE NOT EXISTS (SELECT 1 FROM district_density WHERE run_id = $run_id) OR dd.run_id = $run_id
),
published AS (
    SELECT p.*, d.parent_code
    FROM district_density_published AS p
    JOIN windows USING (window_start)
    JOIN districts AS d ON d.district_code = p.district_code AND d.level = p.level
),
groups AS (
    SELECT window_start, parent_code, count(*) FILTER (WHERE suppressed) AS hidden
    FROM published WHERE parent_code IS NOT NULL
    GROUP BY window_start, parent_code
)
SELECT
    (SELECT count(*) FROM published),
    (SELECT count(*) FROM published WHERE NOT suppressed AND (people_estimate IS NULL OR people_estimate <= $k)),
    (SELECT count(*) FROM published WHERE suppressed AND (people_estimate IS NOT NULL OR density_per_km2 IS NOT NULL)),
    (SELECT count(*) FROM groups AS g JOIN published AS p
         ON p.window_start = g.window_start AND p.district_code = g.parent_code
     WHERE g.hidden = 1 AND NOT p.suppressed)
