CREATE TABLE IF NOT EXISTS bts_presence (
    window_start   TIMESTAMPTZ NOT NULL,
    operator       VARCHAR NOT NULL,
    place_level    VARCHAR NOT NULL,      -- cell | site
    place_id       VARCHAR NOT NULL,
    subscribers    BIGINT NOT NULL,       -- internal: not k-anonymised, never published
    location_rule  VARCHAR NOT NULL,
    run_id         VARCHAR
);
CREATE TABLE IF NOT EXISTS district_density (
    window_start        TIMESTAMPTZ NOT NULL,
    level               VARCHAR NOT NULL,
    district_code       VARCHAR NOT NULL,
    subscribers         DOUBLE NOT NULL,  -- apportioned, all operators
    people_estimate     DOUBLE NOT NULL,  -- scaled by market share (and multi-SIM factor)
    density_per_km2     DOUBLE,           -- people per km2 of land
    operators_reporting INTEGER,
    drop_ids            VARCHAR[],        -- provenance: the accepted drops that fed the window
    run_id              VARCHAR
);
-- Published (k-anonymised) view of district_density: NULL where suppressed.
CREATE TABLE IF NOT EXISTS district_density_published (
    window_start     TIMESTAMPTZ NOT NULL,
    level            VARCHAR NOT NULL,
    district_code    VARCHAR NOT NULL,
    people_estimate  BIGINT,
    density_per_km2  DOUBLE,
    suppressed       BOOLEAN NOT NULL,
    suppression      VARCHAR              -- primary | complementary | NULL
);
CREATE TABLE IF NOT EXISTS district_presence_daily (
    day            DATE NOT NULL,
    level          VARCHAR NOT NULL,
    district_code  VARCHAR NOT NULL,
    subscribers    DOUBLE NOT NULL,
    run_id         VARCHAR
);
CREATE TABLE IF NOT EXISTS density_baseline (
    day            DATE NOT NULL,         -- the day this baseline is used for
    level          VARCHAR NOT NULL,      -- site | kelurahan | kecamatan | ...
    place_id       VARCHAR NOT NULL,
    time_of_day    INTEGER NOT NULL,      -- minutes since local midnight (WIB) of the window start
    median         DOUBLE,
    mad            DOUBLE,
    n_obs          INTEGER NOT NULL,
    kind           VARCHAR NOT NULL,      -- weekly | bootstrap
    run_id         VARCHAR,
    day_type       VARCHAR                -- weekday | saturday | sunday | holiday (of the slot's local date)
);
-- Warehouses created before baselines by day type (docs/decisions/012) get the column here.
ALTER TABLE density_baseline ADD COLUMN IF NOT EXISTS day_type VARCHAR;
