-- Events of the accepted drops listed in presence_inputs (a temp table of drops.lake_path
-- rows for the window range), each joined to the cell version valid at event time. The
-- window is the drop's window, not a bucket of event_time, so one drop feeds one window.
-- Used as a view by bts_presence_{any,last,modal}.sql and district_presence_daily.sql.
CREATE OR REPLACE TEMP VIEW presence_events AS
SELECT
    i.window_start,
    i.operator,
    e.subscriber_key,
    r.cell_id,
    r.site_id,
    e.event_time
FROM read_parquet(getvariable('presence_files'), filename = true) AS e
JOIN presence_inputs AS i
    ON i.lake_path = e.filename
JOIN bts_registry AS r
    ON r.cell_id = e.cell_id
   AND r.operator = i.operator
   AND e.event_time >= r.valid_from
   AND (r.valid_to IS NULL OR e.event_time < r.valid_to)
