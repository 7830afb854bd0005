CREATE TABLE IF NOT EXISTS crowd_alerts (
    alert_id            VARCHAR PRIMARY KEY,
    level               VARCHAR NOT NULL,
    place_id            VARCHAR NOT NULL,
    place_name          VARCHAR,
    state               VARCHAR NOT NULL,  -- open | escalated | closed
    severity            INTEGER NOT NULL,
    opened_window       TIMESTAMPTZ NOT NULL,
    last_window         TIMESTAMPTZ NOT NULL,
    closed_window       TIMESTAMPTZ,
    observed            DOUBLE,
    baseline_median     DOUBLE,
    baseline_mad        DOUBLE,
    ratio               DOUBLE,
    robust_z            DOUBLE,
    excess_people       DOUBLE,
    windows             INTEGER,
    drop_ids            VARCHAR[],
    contract_versions   VARCHAR[],
    code_version        VARCHAR,
    run_id              VARCHAR,
    updated_at          TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS alert_transitions (
    alert_id     VARCHAR NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    transition   VARCHAR NOT NULL,       -- opened | escalated | closed
    observed     DOUBLE,
    ratio        DOUBLE,
    robust_z     DOUBLE,
    run_id       VARCHAR
);
CREATE TABLE IF NOT EXISTS broadcast_requests (
    request_id      VARCHAR PRIMARY KEY,  -- idempotent: hash of alert, transition, operator
    alert_id        VARCHAR NOT NULL,
    transition      VARCHAR NOT NULL,
    operator        VARCHAR NOT NULL,
    cell_ids        VARCHAR[] NOT NULL,
    message_id      VARCHAR NOT NULL,     -- Bahasa Indonesia
    message_en      VARCHAR NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    outbox_path     VARCHAR,
    http_status     VARCHAR,
    attempts        INTEGER,
    delivered_at    TIMESTAMPTZ,
    run_id          VARCHAR
);
