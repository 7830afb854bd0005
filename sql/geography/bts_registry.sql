-- bts_registry, step 2: versions of each cell from the operators' full snapshots
-- (`cell_accepted`: rows that passed screening; one snapshot = one operator's drop at window_start).
-- A version starts when a cell appears, reappears after being absent, or has moved more than
-- $move_m metres since the previous snapshot; it ends (valid_to) at the operator's next snapshot
-- without it or with it elsewhere. Open versions have valid_to NULL.
WITH snapshots AS (
    SELECT operator, window_start,
           dense_rank() OVER (PARTITION BY operator ORDER BY window_start) AS snap
    FROM (SELECT DISTINCT operator, window_start FROM cell_accepted)
),
observed AS (
    SELECT a.*, s.snap
    FROM cell_accepted AS a
    JOIN snapshots AS s USING (operator, window_start)
),
flagged AS (
    SELECT *,
           lag(snap) OVER w AS prev_snap,
           lag(lon) OVER w AS prev_lon,
           lag(lat) OVER w AS prev_lat
    FROM observed
    WINDOW w AS (PARTITION BY operator, cell_id ORDER BY snap)
),
starts AS (
    SELECT *,
           CASE
               WHEN prev_snap IS NULL OR prev_snap <> snap - 1 THEN 1
               -- Haversine distance in metres from the previous snapshot's position.
               WHEN 2 * 6371008.8 * asin(sqrt(
                        pow(sin(radians(lat - prev_lat) / 2), 2)
                        + cos(radians(prev_lat)) * cos(radians(lat)) * pow(sin(radians(lon - prev_lon) / 2), 2)
                    )) > $move_m THEN 1
               ELSE 0
           END AS new_version
    FROM flagged
),
versioned AS (
    SELECT *,
           sum(new_version) OVER (PARTITION BY operator, cell_id ORDER BY snap ROWS UNBOUNDED PRECEDING) AS version
    FROM starts
),
grouped AS (
    SELECT operator, cell_id, version,
           min(snap) AS first_snap,
           max(snap) AS last_snap,
           arg_min(lon, snap) AS lon,
           arg_min(lat, snap) AS lat,
           arg_min(radio, snap) AS radio,
           arg_min(drop_id, snap) AS source_drop_id
    FROM versioned
    GROUP BY operator, cell_id, version
)
SELECT g.cell_id, g.operator, g.lon, g.lat, g.radio,
       f.window_start AS valid_from,
       n.window_start AS valid_to,
       g.source_drop_id
FROM grouped AS g
JOIN snapshots AS f ON f.operator = g.operator AND f.snap = g.first_snap
LEFT JOIN snapshots AS n ON n.operator = g.operator AND n.snap = g.last_snap + 1
ORDER BY g.operator, g.cell_id, valid_from
