-- One row per drop that reached the platform (docs/design.md section 6). Status lifecycle:
-- received -> accepted | quarantined | duplicate; accepted -> superseded | deleted;
-- quarantined -> released (then accepted/quarantined again) | rejected | deleted.
CREATE TABLE IF NOT EXISTS drops (
    drop_id           VARCHAR PRIMARY KEY,
    operator          VARCHAR,
    feed              VARCHAR,          -- events | cells
    file_name         VARCHAR,
    manifest_name     VARCHAR,
    sha256            VARCHAR,          -- of the data file's bytes, as received
    bytes             BIGINT,
    row_count         BIGINT,           -- declared in the manifest
    rows_loaded       BIGINT,           -- parsed into staging
    window_start      TIMESTAMPTZ,
    window_end        TIMESTAMPTZ,
    delivery          INTEGER,
    key_id            VARCHAR,          -- pseudonymization key id (not the key)
    received_at       TIMESTAMPTZ,
    validated_at      TIMESTAMPTZ,
    contract_id       VARCHAR,
    contract_version  VARCHAR,
    status            VARCHAR NOT NULL,
    reason            VARCHAR,          -- one line, never subscriber values
    raw_path          VARCHAR,
    lake_path         VARCHAR,
    quarantine_path   VARCHAR,
    superseded_by     VARCHAR,
    run_id            VARCHAR
);
