-- Location rule `any`: a subscriber counts at every cell and every site seen in the window.
-- GROUP BY to distinct pairs, then count rows: bounded memory where count(DISTINCT) is not
-- (docs/design.md section 9).
INSERT INTO bts_presence (window_start, operator, place_level, place_id, subscribers, location_rule, run_id)
WITH subscriber_cells AS (
    SELECT window_start, operator, subscriber, cell_id, site_id
    FROM presence_events
    GROUP BY window_start, operator, subscriber, cell_id, site_id
),
subscriber_sites AS (
    SELECT window_start, operator, subscriber, site_id
    FROM subscriber_cells
    GROUP BY window_start, operator, subscriber, site_id
)
SELECT window_start, operator, 'cell', cell_id, count(*), 'any', $run_id
FROM (
    -- a cell moved between sites inside the window still counts each subscriber once
    SELECT window_start, operator, subscriber, cell_id
    FROM subscriber_cells
    GROUP BY window_start, operator, subscriber, cell_id
)
GROUP BY window_start, operator, cell_id
UNION ALL
SELECT window_start, operator, 'site', site_id, count(*), 'any', $run_id
FROM subscriber_sites
GROUP BY window_start, operator, site_id
