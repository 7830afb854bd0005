-- Modeled on NIST SP 800-88 Rev.1 certificate of sanitization.
CREATE TABLE IF NOT EXISTS deletion_certificates (
    certificate_id   VARCHAR PRIMARY KEY,
    object_kind      VARCHAR NOT NULL,    -- raw_drop | quarantine | lake_partition | warehouse_rows | dagster_partition
    object_id        VARCHAR NOT NULL,
    window_start     TIMESTAMPTZ,
    partition_key    VARCHAR,
    rows             BIGINT,
    bytes            BIGINT,
    content_sha256   VARCHAR,             -- hash of the content before deletion
    policy           VARCHAR NOT NULL,    -- contract id + property that required it
    retention_period VARCHAR NOT NULL,
    deleted_at       TIMESTAMPTZ NOT NULL,
    method           VARCHAR NOT NULL,    -- e.g. unlink+fsync, DELETE+CHECKPOINT
    verification     VARCHAR NOT NULL,    -- verified | failed: reason
    actor            VARCHAR,
    run_id           VARCHAR
);
-- Append-only, hash-chained record of every step (see crowd_platform.lib.audit).
CREATE TABLE IF NOT EXISTS audit_log (
    seq          BIGINT PRIMARY KEY,
    recorded_at  TIMESTAMPTZ NOT NULL,
    actor        VARCHAR NOT NULL,
    purpose      VARCHAR NOT NULL,
    action       VARCHAR NOT NULL,
    object_kind  VARCHAR,
    object_id    VARCHAR,
    run_id       VARCHAR,
    details      VARCHAR,                -- canonical JSON, never subscriber values
    prev_hash    VARCHAR NOT NULL,
    record_hash  VARCHAR NOT NULL
);
