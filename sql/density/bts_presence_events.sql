-- Events of ONE accepted drop of presence_inputs, number n (1-based, in presence_inputs order),
-- joined to the cell version valid at event time (presence_cells, see bts_presence_cells.sql).
-- A table macro: density/presence.py defines the view presence_events as the UNION ALL of
-- presence_file_events(1) .. presence_file_events(N), one branch per file, so each file is read
-- with its window, operator and part as constants (bound from the variables presence_files,
-- presence_windows, presence_operators, presence_parts) instead of joining every event's file
-- name to the inputs table; the registry join is filtered to the drop's operator (measured in
-- docs/performance.md, bench/bench_density.py). The window is the drop's window, not a bucket of
-- event_time, so one drop feeds one window. `part` numbers the (window_start, operator) pairs of
-- the inputs (presence_parts): the presence queries group on it, a small integer, and map it back.
-- `subscriber` is DuckDB's 64-bit hash() of the pseudonym: grouping on a fixed-width integer is
-- about twice as fast as parsing the first 128 bits of the 64-character hex (measured at 20 M
-- events per window, bench/bench_density.py) and half the memory of the string. The pseudonyms
-- are HMAC digests (uniform), so two subscribers of one operator share a hash with probability
-- n^2 / 2^65: 10^-6 per window at 6 M subscribers (Jakarta), 3 x 10^-4 at 100 M (a national
-- operator); a collision counts one subscriber too few among millions, far below the market-share
-- and k-anonymity error. The hash is never stored: it lives only inside the presence queries.
-- Used through presence_events by bts_presence_{any,last,modal}.sql and district_presence_daily.sql.
CREATE OR REPLACE TEMP MACRO presence_file_events(n) AS TABLE
SELECT
    CAST(getvariable('presence_windows')[n] AS TIMESTAMPTZ) AS window_start,
    CAST(getvariable('presence_operators')[n] AS VARCHAR) AS operator,
    CAST(getvariable('presence_parts')[n] AS INTEGER) AS part,
    hash(e.subscriber_key) AS subscriber,
    r.cell_rank,
    r.cell_id,
    r.site_id,
    e.event_time
FROM read_parquet(getvariable('presence_files')[n]) AS e
JOIN presence_cells AS r
    ON r.cell_id = e.cell_id
   AND r.operator = getvariable('presence_operators')[n]
   AND e.event_time >= r.valid_from
   AND (r.valid_to IS NULL OR e.event_time < r.valid_to)
