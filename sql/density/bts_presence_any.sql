-- Location rule `any`: a subscriber counts at every cell and every site seen in the window.
-- GROUP BY to distinct pairs, then count rows: bounded memory where count(DISTINCT) is not
-- (docs/design.md section 9). Grouped on `part` (one integer per window and operator,
-- presence_parts), mapped back at the end.
WITH subscriber_cells AS (
    SELECT part, subscriber, cell_id, site_id
    FROM presence_events
    GROUP BY part, subscriber, cell_id, site_id
),
subscriber_sites AS (
    SELECT part, subscriber, site_id
    FROM subscriber_cells
    GROUP BY part, subscriber, site_id
),
counted AS (
    SELECT part, 'cell' AS place_level, cell_id AS place_id, count(*) AS subscribers
    FROM (
        -- a cell moved between sites inside the window still counts each subscriber once
        SELECT part, subscriber, cell_id
        FROM subscriber_cells
        GROUP BY part, subscriber, cell_id
    )
    GROUP BY part, cell_id
    UNION ALL
    SELECT part, 'site', site_id, count(*)
    FROM subscriber_sites
    GROUP BY part, site_id
)
SELECT p.window_start, p.operator, c.place_level, c.place_id, c.subscribers, 'any', $run_id
FROM counted AS c
JOIN presence_parts AS p USING (part)
