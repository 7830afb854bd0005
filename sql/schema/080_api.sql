-- Bearer tokens of the published API (crowd_platform/api, docs/api.md). Only the SHA-256 of a
-- 256-bit random token is kept; the token itself is printed once by `crowd-platform tokens issue`.
-- The server never opens the warehouse read-write: the CLI mirrors this table, after every
-- change, into CROWD_HOME/api/tokens.json (atomic replace), which the server re-reads within a
-- second (decision 017).
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id      VARCHAR PRIMARY KEY,   -- short public id (first 12 hex of the hash is NOT used)
    name          VARCHAR NOT NULL,      -- who: recorded in every API audit record
    token_sha256  VARCHAR NOT NULL,
    datasets      VARCHAR[] NOT NULL,    -- published dataset names, or ['*'] for all
    issued_at     TIMESTAMPTZ NOT NULL,
    issued_by     VARCHAR,
    revoked_at    TIMESTAMPTZ,
    revoked_by    VARCHAR
);
