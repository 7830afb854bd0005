-- Columns of a table of the in-memory copy (indicator routes choose their filters from them).
SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = 'memory' AND table_name = $table ORDER BY column_index
