-- Location rule `last`: each subscriber is counted once, at the cell (and its site) of their
-- last event in the window. Ties on event_time go to the larger cell_id so reruns agree.
-- The last event is found with one max() over a HUGEINT that packs (event time, cell_rank):
-- cell_rank sorts like cell_id within an operator and fits in the low 32 bits. A plain
-- integer max is several times cheaper than arg_max over a struct with a tuple ordering key.
-- Grouped on `part` (one integer per window and operator, presence_parts), mapped back at the end.
WITH located AS (
    SELECT
        part,
        CAST(max(CAST(epoch_us(event_time) AS HUGEINT) * 4294967296 + cell_rank) & 4294967295 AS BIGINT) AS cell_rank
    FROM presence_events
    GROUP BY part, subscriber
),
placed AS (
    SELECT l.part, c.cell_id, c.site_id
    FROM located AS l
    JOIN presence_cells AS c USING (cell_rank)
),
counted AS (
    SELECT part, 'cell' AS place_level, cell_id AS place_id, count(*) AS subscribers
    FROM placed
    GROUP BY part, cell_id
    UNION ALL
    SELECT part, 'site', site_id, count(*)
    FROM placed
    GROUP BY part, site_id
)
SELECT p.window_start, p.operator, c.place_level, c.place_id, c.subscribers, 'last', $run_id
FROM counted AS c
JOIN presence_parts AS p USING (part)
