-- Tables present in the attached warehouse (a published table may not exist yet).
SELECT table_name FROM duckdb_tables() WHERE database_name = 'wh'
