-- Versioned cell registry built from the operators' cell-list drops.
CREATE TABLE IF NOT EXISTS bts_registry (
    cell_id        VARCHAR NOT NULL,      -- MCC-MNC-LAC-CI
    operator       VARCHAR NOT NULL,
    site_id        VARCHAR NOT NULL,      -- co-located cells share a site
    lon            DOUBLE NOT NULL,
    lat            DOUBLE NOT NULL,
    radio          VARCHAR,
    valid_from     TIMESTAMPTZ NOT NULL,
    valid_to       TIMESTAMPTZ,           -- NULL while valid
    source_drop_id VARCHAR
);
CREATE TABLE IF NOT EXISTS bts_registry_rejects (
    cell_id        VARCHAR,
    operator       VARCHAR,
    reason         VARCHAR NOT NULL,
    source_drop_id VARCHAR,
    recorded_at    TIMESTAMPTZ
);
-- Administrative units at every configured level; geometry as WKB (EPSG:4326).
CREATE TABLE IF NOT EXISTS districts (
    district_code    VARCHAR NOT NULL,    -- BPS code
    level            VARCHAR NOT NULL,    -- kelurahan | kecamatan | kabkota | provinsi
    level_rank       INTEGER NOT NULL,    -- 0 = finest
    name             VARCHAR,
    parent_code      VARCHAR,
    code_kemendagri  VARCHAR,
    is_admin_unit    BOOLEAN NOT NULL,    -- false for water/forest: area but no people
    area_km2         DOUBLE NOT NULL,     -- from an equal-area / local UTM projection
    population       DOUBLE,
    geometry_wkb     BLOB,
    land_area_km2    DOUBLE               -- area of admin units only (0 for water/forest): density denominator
);
-- Finest unit -> its code at every configured level (itself included), for roll-ups.
CREATE TABLE IF NOT EXISTS district_hierarchy (
    district_code_finest VARCHAR NOT NULL,
    level                VARCHAR NOT NULL,
    district_code        VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS bts_coverage (
    site_id       VARCHAR NOT NULL,
    scope         VARCHAR NOT NULL,       -- an operator, or 'all'
    lon           DOUBLE,
    lat           DOUBLE,
    area_km2      DOUBLE NOT NULL,
    geometry_wkb  BLOB
);
-- Share of a site's subscribers that belongs to each finest-level district.
CREATE TABLE IF NOT EXISTS bts_district_weights (
    site_id        VARCHAR NOT NULL,
    scope          VARCHAR NOT NULL,      -- an operator, or 'all'
    district_code  VARCHAR NOT NULL,      -- finest level
    weight         DOUBLE NOT NULL,       -- sums to 1 per (site_id, scope)
    method         VARCHAR NOT NULL
);
