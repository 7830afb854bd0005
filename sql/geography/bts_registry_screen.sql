-- bts_registry, step 1: label every observed cell row (from the accepted cell-list drops,
-- registered as `cell_observations`) with the first reason it cannot enter the registry.
-- reason NULL = acceptable so far (the outside-the-area test needs polygons: done in Python).
-- `operator_cell_rules` (registry.operator_cell_rules): each operator's cell-id pattern (from its
-- cells contract; default MCC-MNC-LAC-CI) and whether its ids carry an MNC to attribute.
-- $west..$east, $south..$north: the configured boundaries' bounding box plus
-- geography.bounds_margin_m (registry.area_bounds); $outside: the reason name, 'outside_area'.
WITH counted AS (
    SELECT
        o.*,
        count(*) OVER (PARTITION BY o.drop_id, o.cell_id) AS copies,
        coalesce(regexp_full_match(o.cell_id, r.pattern), false) AS well_formed,
        coalesce(r.checks_mnc, true) AS checks_mnc,
        split_part(o.cell_id, '-', 2) AS mnc
    FROM cell_observations AS o
    LEFT JOIN operator_cell_rules AS r ON r.operator = o.operator
)
SELECT
    c.drop_id, c.operator, c.window_start, c.cell_id, c.lon, c.lat, c.radio,
    CASE
        WHEN c.cell_id IS NULL OR NOT c.well_formed THEN 'malformed_cell_id'
        WHEN c.checks_mnc AND m.mnc IS NULL THEN 'mnc_not_operator'
        WHEN c.lon IS NULL OR c.lat IS NULL OR isnan(c.lon) OR isnan(c.lat) THEN 'missing_coordinates'
        WHEN c.lon = 0 AND c.lat = 0 THEN 'null_island'
        -- Swapped: the latitude holds a longitude of the area and vice versa.
        WHEN NOT (c.lon BETWEEN $west AND $east AND c.lat BETWEEN $south AND $north)
             AND c.lat BETWEEN $west AND $east AND c.lon BETWEEN $south AND $north THEN 'swapped_lon_lat'
        WHEN NOT (c.lon BETWEEN $west AND $east AND c.lat BETWEEN $south AND $north) THEN $outside
        -- Two rows for one id in one snapshot: we cannot know which is right, keep neither.
        WHEN c.copies > 1 THEN 'duplicate_cell_id'
    END AS reason
FROM counted AS c
LEFT JOIN operator_mnc AS m ON m.operator = c.operator AND m.mnc = c.mnc
