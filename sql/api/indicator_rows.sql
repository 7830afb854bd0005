-- Rows of one published indicator table ({table}: a name from the contract, never from a
-- request), filtered by day ({day}: its day or window column, or NULL) and level ({level}: its
-- level column, or NULL); values are bound.
SELECT *
FROM main.{table}
WHERE (CAST($day AS DATE) IS NULL OR CAST({day} AS DATE) = CAST($day AS DATE))
  AND (CAST($level AS VARCHAR) IS NULL OR {level} = CAST($level AS VARCHAR))
ORDER BY ALL
