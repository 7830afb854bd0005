-- Location rule `last`: each subscriber is counted once, at the cell (and its site) of their
-- last event in the window. Ties on event_time go to the larger cell_id so reruns agree.
INSERT INTO bts_presence (window_start, operator, place_level, place_id, subscribers, location_rule, run_id)
WITH located AS (
    SELECT
        window_start,
        operator,
        arg_max({'cell_id': cell_id, 'site_id': site_id}, (event_time, cell_id)) AS place
    FROM presence_events
    GROUP BY window_start, operator, subscriber_key
)
SELECT window_start, operator, 'cell', place.cell_id, count(*), 'last', $run_id
FROM located
GROUP BY window_start, operator, place.cell_id
UNION ALL
SELECT window_start, operator, 'site', place.site_id, count(*), 'last', $run_id
FROM located
GROUP BY window_start, operator, place.site_id
