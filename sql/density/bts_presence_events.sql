-- Events of the accepted drops listed in presence_inputs (a temp table of drops.lake_path
-- rows for the window range), each joined to the cell version valid at event time
-- (presence_cells, see bts_presence_cells.sql). The window is the drop's window, not a
-- bucket of event_time, so one drop feeds one window.
-- `subscriber` is DuckDB's 64-bit hash() of the pseudonym: grouping on a fixed-width integer is
-- about twice as fast as parsing the first 128 bits of the 64-character hex (measured at 20 M
-- events per window, bench/bench_density.py) and half the memory of the string. The pseudonyms
-- are HMAC digests (uniform), so two subscribers of one operator share a hash with probability
-- n^2 / 2^65: 10^-6 per window at 6 M subscribers (Jakarta), 3 x 10^-4 at 100 M (a national
-- operator); a collision counts one subscriber too few among millions, far below the market-share
-- and k-anonymity error. The hash is never stored: it lives only inside the presence queries.
-- Used as a view by bts_presence_{any,last,modal}.sql and district_presence_daily.sql.
CREATE OR REPLACE TEMP VIEW presence_events AS
SELECT
    i.window_start,
    i.operator,
    hash(e.subscriber_key) AS subscriber,
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
