-- Check: every parent district equals the sum of its children (subscribers and people) within
-- $tolerance relative, in every window. Scope: the rows of run $run_id, or the whole table when
-- the check runs on its own (no row of that run).
WITH scoped AS (
    SELECT dd.* FROM district_density AS dd
    WHERE NOT EXISTS (SELECT 1 FROM district_density WHERE run_id = $run_id) OR dd.run_id = $run_id
),
children AS (
    SELECT s.window_start, d.parent_code, sum(s.subscribers) AS subscribers, sum(s.people_estimate) AS people
    FROM scoped AS s JOIN districts AS d ON d.district_code = s.district_code AND d.level = s.level
    WHERE d.parent_code IS NOT NULL
    GROUP BY s.window_start, d.parent_code
)
SELECT count(*) AS parents,
       count(*) FILTER (WHERE abs(p.subscribers - c.subscribers) > $tolerance * greatest(1, abs(p.subscribers))
                           OR abs(p.people_estimate - c.people) > $tolerance * greatest(1, abs(p.people_estimate)))
FROM children AS c
JOIN scoped AS p ON p.window_start = c.window_start AND p.district_code = c.parent_code
