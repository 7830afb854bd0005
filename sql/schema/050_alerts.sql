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
-- Alert state machine per place after each evaluated window (sparse: only places with a
-- streak, an open alert or a cooldown). The next window starts from the previous window's
-- rows, so one-by-one and range runs agree and a rerun restarts from the same state.
CREATE TABLE IF NOT EXISTS alert_place_state (
    window_start    TIMESTAMPTZ NOT NULL,
    level           VARCHAR NOT NULL,
    place_id        VARCHAR NOT NULL,
    streak          INTEGER NOT NULL,      -- consecutive windows with the condition
    quiet           INTEGER NOT NULL,      -- consecutive windows without it while open
    cooldown_left   INTEGER NOT NULL,
    alert_id        VARCHAR,               -- open alert, if any
    severity        INTEGER NOT NULL,
    opened_window   TIMESTAMPTZ,
    alert_windows   INTEGER NOT NULL,      -- windows the condition held since opening
    observed        DOUBLE,
    baseline_median DOUBLE,
    baseline_mad    DOUBLE,
    ratio           DOUBLE,
    robust_z        DOUBLE,
    excess          DOUBLE,
    drop_ids        VARCHAR[],
    run_id          VARCHAR
);
-- One row per window crowd_alerts has processed: evaluated, or skipped with the reason.
CREATE TABLE IF NOT EXISTS alert_evaluations (
    window_start    TIMESTAMPTZ NOT NULL,
    evaluated       BOOLEAN NOT NULL,
    reason          VARCHAR,
    places          INTEGER,
    conditions      INTEGER,
    run_id          VARCHAR
);
