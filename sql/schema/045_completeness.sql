-- Per window: which operators' event feeds were expected (contracts active then), which arrived,
-- and the market share they cover. Alerts are evaluated only for complete windows, or once the
-- contracts' latency has passed with enough of the market reporting (alerts.min_market_share).
CREATE TABLE IF NOT EXISTS window_completeness (
    window_start        TIMESTAMPTZ NOT NULL,
    expected_operators  VARCHAR[] NOT NULL,
    arrived_operators   VARCHAR[] NOT NULL,
    missing_operators   VARCHAR[] NOT NULL,  -- expected and not arrived, or arrived with a volume flag
    flagged_operators   VARCHAR[],           -- arrived, but well below their usual volume (drops.volume_flag)
    expected_share      DOUBLE NOT NULL,  -- sum of the expected operators' market shares
    arrived_share       DOUBLE NOT NULL,  -- of those that arrived (accepted events drops)
    completeness        DOUBLE NOT NULL,  -- arrived_share / expected_share (1 when nothing was expected)
    complete            BOOLEAN NOT NULL, -- every expected operator arrived
    latency_deadline    TIMESTAMPTZ,      -- when the last missing operator's drop is overdue
    run_id              VARCHAR
);
ALTER TABLE window_completeness ADD COLUMN IF NOT EXISTS flagged_operators VARCHAR[];
ALTER TABLE district_density ADD COLUMN IF NOT EXISTS completeness DOUBLE;
ALTER TABLE district_density_published ADD COLUMN IF NOT EXISTS completeness DOUBLE;
