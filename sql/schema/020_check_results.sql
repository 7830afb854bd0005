-- Per drop, per contract rule: the outcome of validation (GX and/or compiled DuckDB rules).
CREATE TABLE IF NOT EXISTS check_results (
    drop_id          VARCHAR NOT NULL,
    rule             VARCHAR NOT NULL,
    engine           VARCHAR NOT NULL,  -- gx | duckdb | manifest
    passed           BOOLEAN NOT NULL,
    element_count    BIGINT,
    unexpected_count BIGINT,
    example_rows     BIGINT[],          -- row numbers only, never values
    details          VARCHAR,
    checked_at       TIMESTAMPTZ NOT NULL,
    run_id           VARCHAR
);
