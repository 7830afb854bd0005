-- What leaves the platform about alerts (docs/design.md section 4.3), rebuilt from crowd_alerts
-- and alert_transitions (internal) by publication/alerts.py after every alert evaluation.
-- Evidence is the place's people estimate exactly as district_density_published shows it for
-- that window: NULL where that table hides it, and always NULL for a site (site counts are tied
-- to district totals through coverage weights anyone can rebuild from public cell positions, so
-- no site count is published). Baseline median and MAD, ratio, robust z and excess stay
-- internal: each gives a hidden value back (ratio x median = observed; the median of three
-- earlier windows is one of those windows' values).
CREATE TABLE IF NOT EXISTS crowd_alerts_published (
    alert_id            VARCHAR PRIMARY KEY,
    level               VARCHAR NOT NULL,
    place_id            VARCHAR NOT NULL,
    place_name          VARCHAR,
    state               VARCHAR NOT NULL,
    severity            INTEGER NOT NULL,
    opened_window       TIMESTAMPTZ NOT NULL,
    last_window         TIMESTAMPTZ NOT NULL,
    closed_window       TIMESTAMPTZ,
    people_estimate     BIGINT,            -- in last_window, as published; NULL = hidden
    evidence_suppressed BOOLEAN NOT NULL,
    windows             INTEGER,
    drop_ids            VARCHAR[],
    contract_versions   VARCHAR[],
    code_version        VARCHAR,
    run_id              VARCHAR,
    updated_at          TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS alert_transitions_published (
    alert_id            VARCHAR NOT NULL,
    window_start        TIMESTAMPTZ NOT NULL,
    transition          VARCHAR NOT NULL,
    people_estimate     BIGINT,            -- in window_start, as published; NULL = hidden
    evidence_suppressed BOOLEAN NOT NULL,
    run_id              VARCHAR
);
-- Every value district_density_published has shown, per place and window. A later version of a
-- window (a superseding delivery) must not pick, as a complementary cell, one whose value the
-- world has already seen: hiding it would protect nothing (publication/kanon.py, ``known``).
CREATE TABLE IF NOT EXISTS district_density_shown (
    window_start     TIMESTAMPTZ NOT NULL,
    level            VARCHAR NOT NULL,
    district_code    VARCHAR NOT NULL,
    people_estimate  BIGINT NOT NULL
);
