-- Location rule `modal`: each subscriber is counted once, at the site with most of their
-- events in the window (ties: the site of the latest event, then the larger site_id), and
-- at the last cell they used within that site.
INSERT INTO bts_presence (window_start, operator, place_level, place_id, subscribers, location_rule, run_id)
WITH per_cell AS (
    SELECT window_start, operator, subscriber, site_id, cell_id,
           count(*) AS events, max(event_time) AS last_time
    FROM presence_events
    GROUP BY window_start, operator, subscriber, site_id, cell_id
),
per_site AS (
    SELECT window_start, operator, subscriber, site_id,
           sum(events) AS events,
           max(last_time) AS last_time,
           arg_max(cell_id, (last_time, cell_id)) AS last_cell
    FROM per_cell
    GROUP BY window_start, operator, subscriber, site_id
),
located AS (
    SELECT window_start, operator,
           arg_max({'cell_id': last_cell, 'site_id': site_id}, (events, last_time, site_id)) AS place
    FROM per_site
    GROUP BY window_start, operator, subscriber
)
SELECT window_start, operator, 'cell', place.cell_id, count(*), 'modal', $run_id
FROM located
GROUP BY window_start, operator, place.cell_id
UNION ALL
SELECT window_start, operator, 'site', place.site_id, count(*), 'modal', $run_id
FROM located
GROUP BY window_start, operator, place.site_id
