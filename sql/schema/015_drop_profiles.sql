-- Per accepted events drop: how big it is (rows, distinct subscribers, distinct cells), by day type
-- and local time of day, so that a later drop can be compared with its operator's usual volume.
-- Counts only; a short but valid drop is flagged on drops.volume_flag.
CREATE TABLE IF NOT EXISTS drop_profiles (
    drop_id       VARCHAR PRIMARY KEY,
    operator      VARCHAR NOT NULL,
    feed          VARCHAR NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL,
    day_type      VARCHAR NOT NULL,   -- weekday | saturday | sunday | holiday (local date)
    time_of_day   INTEGER NOT NULL,   -- minutes since local midnight
    rows          BIGINT NOT NULL,
    subscribers   BIGINT NOT NULL,
    cells         BIGINT NOT NULL,
    run_id        VARCHAR
);
ALTER TABLE drops ADD COLUMN IF NOT EXISTS volume_flag VARCHAR;
