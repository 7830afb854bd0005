-- Location rule `last`: each subscriber is counted once, at the cell (and its site) of their
-- last event in the window. Ties on event_time go to the larger cell_id so reruns agree.
-- The last event is found with one max() over a HUGEINT that packs (event time, cell_rank):
-- cell_rank sorts like cell_id within an operator and fits in the low 32 bits. A plain
-- integer max is several times cheaper than arg_max over a struct with a tuple ordering key.
INSERT INTO bts_presence (window_start, operator, place_level, place_id, subscribers, location_rule, run_id)
WITH located AS (
    SELECT
        window_start,
        operator,
        CAST(max(CAST(epoch_us(event_time) AS HUGEINT) * 4294967296 + cell_rank) & 4294967295 AS BIGINT) AS cell_rank
    FROM presence_events
    GROUP BY window_start, operator, subscriber
),
placed AS (
    SELECT l.window_start, l.operator, c.cell_id, c.site_id
    FROM located AS l
    JOIN presence_cells AS c USING (cell_rank)
)
SELECT window_start, operator, 'cell', cell_id, count(*), 'last', $run_id
FROM placed
GROUP BY window_start, operator, cell_id
UNION ALL
SELECT window_start, operator, 'site', site_id, count(*), 'last', $run_id
FROM placed
GROUP BY window_start, operator, site_id
