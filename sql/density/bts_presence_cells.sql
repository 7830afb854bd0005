-- Registry cell versions numbered in (operator, cell_id, valid_from) order. The number is a
-- compact BIGINT that stands for a cell version in the per-subscriber aggregations, and sorts
-- like cell_id within an operator, so it also serves as the tie-break "larger cell_id wins".
CREATE OR REPLACE TEMP TABLE presence_cells AS
SELECT
    CAST(row_number() OVER (ORDER BY operator, cell_id, valid_from) AS BIGINT) AS cell_rank,
    operator,
    cell_id,
    site_id,
    valid_from,
    valid_to
FROM bts_registry
