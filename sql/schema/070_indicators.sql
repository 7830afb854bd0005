-- Mobility indicators (docs/indicators.md), per LOCAL day (density.local_timezone).
-- Per subscriber, internal, personal data (pseudonymized): each subscriber's one finest district
-- per local day (period 'day', rules last and modal) and in the morning and evening windows
-- (indicators.flow_rule). `subscriber` is DuckDB's 64-bit hash() of the operator's pseudonym, as
-- in the presence queries, never the pseudonym itself. Kept only as long as the next day's flows
-- need it (platform_datasets.yaml retention 3 d), purged at sunset.
CREATE TABLE IF NOT EXISTS subscriber_daily_location (
    day            DATE NOT NULL,         -- local date
    period         VARCHAR NOT NULL,      -- day | morning | evening
    rule           VARCHAR NOT NULL,      -- last | modal
    operator       VARCHAR NOT NULL,
    subscriber     UBIGINT NOT NULL,      -- hash of the pseudonym: personal data
    site_id        VARCHAR NOT NULL,      -- site of the last event in the chosen district
    district_code  VARCHAR NOT NULL,      -- finest level: the largest-weight district of the site
    run_id         VARCHAR
);
-- Per local day and operator, the pseudonymization keys of its accepted event drops (key ids,
-- not keys): consecutive-day flows match pseudonyms only under one key over both days.
CREATE TABLE IF NOT EXISTS indicator_operator_days (
    day            DATE NOT NULL,
    operator       VARCHAR NOT NULL,
    drops          INTEGER NOT NULL,
    key_ids        VARCHAR[],             -- distinct, sorted; '' stands for a drop without key_id
    run_id         VARCHAR
);
-- Unique subscribers per district, per local day (grain 'day', hour NULL) and per local hour
-- (grain 'hour', hour 0..23), apportioned like district_presence_daily (internal, not additive).
CREATE TABLE IF NOT EXISTS district_unique_subscribers (
    day            DATE NOT NULL,
    grain          VARCHAR NOT NULL,      -- day | hour
    hour           INTEGER,               -- local hour of the window start; NULL for grain 'day'
    level          VARCHAR NOT NULL,
    district_code  VARCHAR NOT NULL,
    subscribers    DOUBLE NOT NULL,
    run_id         VARCHAR
);
CREATE TABLE IF NOT EXISTS district_unique_subscribers_published (
    day            DATE NOT NULL,
    grain          VARCHAR NOT NULL,
    hour           INTEGER,
    level          VARCHAR NOT NULL,
    district_code  VARCHAR NOT NULL,
    subscribers    BIGINT,                -- NULL where suppressed
    suppressed     BOOLEAN NOT NULL,
    suppression    VARCHAR                -- primary | complementary | NULL
);
-- Subscribers whose daily location (rule last | modal) is in the district (additive over levels).
CREATE TABLE IF NOT EXISTS district_daily_location (
    day            DATE NOT NULL,
    rule           VARCHAR NOT NULL,
    level          VARCHAR NOT NULL,
    district_code  VARCHAR NOT NULL,
    subscribers    BIGINT NOT NULL,
    run_id         VARCHAR
);
CREATE TABLE IF NOT EXISTS district_daily_location_published (
    day            DATE NOT NULL,
    rule           VARCHAR NOT NULL,
    level          VARCHAR NOT NULL,
    district_code  VARCHAR NOT NULL,
    subscribers    BIGINT,
    suppressed     BOOLEAN NOT NULL,
    suppression    VARCHAR
);
-- Origin-destination flows between districts of one level: consecutive_days (origin = daily
-- location on day-1, destination = on day) and morning_evening (within the day). Sparse: pairs
-- with at least one subscriber.
CREATE TABLE IF NOT EXISTS district_od_flows (
    day               DATE NOT NULL,
    flow_kind         VARCHAR NOT NULL,   -- consecutive_days | morning_evening
    rule              VARCHAR NOT NULL,
    level             VARCHAR NOT NULL,
    origin_code       VARCHAR NOT NULL,
    destination_code  VARCHAR NOT NULL,
    subscribers       BIGINT NOT NULL,
    run_id            VARCHAR
);
-- Published flows, with row and column totals: total 'origin' (destination_code NULL: every
-- flow out of origin_code), total 'destination' (origin_code NULL), NULL for a single flow.
CREATE TABLE IF NOT EXISTS district_od_flows_published (
    day               DATE NOT NULL,
    flow_kind         VARCHAR NOT NULL,
    rule              VARCHAR NOT NULL,
    level             VARCHAR NOT NULL,
    origin_code       VARCHAR,
    destination_code  VARCHAR,
    total             VARCHAR,            -- NULL | origin | destination
    subscribers       BIGINT,             -- NULL where suppressed
    suppressed        BOOLEAN NOT NULL,
    suppression       VARCHAR
);
-- Every count the indicator publications have shown, per table, local day, slice and cell. A
-- rerun of a day (late drops, a correction) republishes it; whoever kept the earlier version
-- knows each value it showed, so kanon must neither count on hiding such a value nor pick it as
-- a complementary cell (publication/kanon.py, ``known``), as district_density_shown does for
-- density. slice and cell are JSON arrays (unambiguous whatever the codes hold): slice
-- [grain, hour] (unique subscribers; hour -1 for the day), [rule] (daily location) or
-- [kind, rule, level] (flows); cell [level, district_code], or [origin, destination] (destination
-- null for an origin total). Internal; values are all above k.
CREATE TABLE IF NOT EXISTS indicators_shown (
    dataset        VARCHAR NOT NULL,      -- the published table
    day            DATE NOT NULL,
    slice          VARCHAR NOT NULL,
    cell           VARCHAR NOT NULL,
    subscribers    BIGINT NOT NULL
);
