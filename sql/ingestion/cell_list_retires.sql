-- How many of the operator's current cells (open registry versions) a staged full cell list
-- leaves out, and how many current cells there are.
WITH current AS (
    SELECT DISTINCT cell_id FROM bts_registry WHERE operator = $operator AND valid_to IS NULL
),
listed AS (
    SELECT DISTINCT CAST(cell_id AS VARCHAR) AS cell_id FROM read_parquet($parquet)
)
SELECT count(*) FILTER (WHERE l.cell_id IS NULL) AS retired, count(*) AS current_cells
FROM current c LEFT JOIN listed l USING (cell_id)
