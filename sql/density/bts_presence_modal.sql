-- Location rule `modal`: each subscriber is counted once, at the site with most of their
-- events in the window (ties: the site of the latest event, then the larger site_id), and
-- at the last cell they used within that site. Grouped on `part` (one integer per window and
-- operator, presence_parts), mapped back at the end.
WITH per_cell AS (
    SELECT part, subscriber, site_id, cell_id,
           count(*) AS events, max(event_time) AS last_time
    FROM presence_events
    GROUP BY part, subscriber, site_id, cell_id
),
per_site AS (
    SELECT part, subscriber, site_id,
           sum(events) AS events,
           max(last_time) AS last_time,
           arg_max(cell_id, (last_time, cell_id)) AS last_cell
    FROM per_cell
    GROUP BY part, subscriber, site_id
),
located AS (
    SELECT part,
           arg_max({'cell_id': last_cell, 'site_id': site_id}, (events, last_time, site_id)) AS place
    FROM per_site
    GROUP BY part, subscriber
),
counted AS (
    SELECT part, 'cell' AS place_level, place.cell_id AS place_id, count(*) AS subscribers
    FROM located
    GROUP BY part, place.cell_id
    UNION ALL
    SELECT part, 'site', place.site_id, count(*)
    FROM located
    GROUP BY part, place.site_id
)
SELECT p.window_start, p.operator, c.place_level, c.place_id, c.subscribers, 'modal', $run_id
FROM counted AS c
JOIN presence_parts AS p USING (part)
