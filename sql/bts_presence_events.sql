-- Events of the accepted drops listed in presence_inputs (a temp table of drops.lake_path
-- rows for the window range), each joined to the cell version valid at event time
-- (presence_cells, see bts_presence_cells.sql). The window is the drop's window, not a
-- bucket of event_time, so one drop feeds one window.
-- `subscriber` is the first 128 bits of the 256-bit pseudonym as a UHUGEINT: grouping on a
-- fixed-width integer instead of a 64-character string halves memory and time at 20 M events
-- per window, and a collision among even 10^9 HMAC digests has probability below 10^-20.
-- Ingestion only publishes 64-lowercase-hex keys (a blocking contract rule); TRY_CAST keeps
-- any value out of error messages all the same.
-- Used as a view by bts_presence_{any,last,modal}.sql and district_presence_daily.sql.
CREATE OR REPLACE TEMP VIEW presence_events AS
SELECT
    i.window_start,
    i.operator,
    TRY_CAST('0x' || substr(e.subscriber_key, 1, 32) AS UHUGEINT) AS subscriber,
    r.cell_rank,
    r.cell_id,
    r.site_id,
    e.event_time
FROM read_parquet(getvariable('presence_files'), filename = true) AS e
JOIN presence_inputs AS i
    ON i.lake_path = e.filename
JOIN presence_cells AS r
    ON r.cell_id = e.cell_id
   AND r.operator = i.operator
   AND e.event_time >= r.valid_from
   AND (r.valid_to IS NULL OR e.event_time < r.valid_to)
