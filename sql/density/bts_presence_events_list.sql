-- presence_events for MANY accepted drops (more than presence.PER_FILE_SCAN_MAX_FILES, e.g. the
-- 480 of a local day for district_presence_daily and the indicators): one read_parquet over the
-- file list, each event's file mapped to its window, operator and part through DuckDB's integer
-- file_index (presence_file_list, one row per file in presence_inputs order), not through its
-- name. Per-file branches (bts_presence_events.sql) cost a few ms each to plan and run: at 480
-- small files they took twice as long as this join (docs/performance.md, density). Same columns
-- and rows as the per-file view; see bts_presence_events.sql for `subscriber` and `part`.
CREATE OR REPLACE TEMP VIEW presence_events AS
SELECT
    i.window_start,
    i.operator,
    i.part,
    hash(e.subscriber_key) AS subscriber,
    r.cell_rank,
    r.cell_id,
    r.site_id,
    e.event_time
FROM read_parquet(getvariable('presence_files')) AS e
JOIN presence_file_list AS i
    ON i.file_index = e.file_index
JOIN presence_cells AS r
    ON r.cell_id = e.cell_id
   AND r.operator = i.operator
   AND e.event_time >= r.valid_from
   AND (r.valid_to IS NULL OR e.event_time < r.valid_to)
