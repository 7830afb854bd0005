-- Every table of the server's in-memory copy (the no-internal-table proof reads it).
SELECT table_name FROM duckdb_tables() WHERE database_name = 'memory' ORDER BY table_name
