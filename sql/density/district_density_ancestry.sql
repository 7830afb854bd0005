-- Every finest-level district with itself and each of its ancestors (via parent_code), and
-- the land area under each district: the sum of its finest admin units (water and forest
-- units have area but no people, so they are left out of density).
CREATE OR REPLACE TEMP TABLE district_ancestry AS
WITH RECURSIVE ancestry(finest_code, district_code, level, level_rank) AS (
    SELECT district_code, district_code, level, level_rank
    FROM districts
    WHERE level_rank = 0
    UNION ALL
    SELECT a.finest_code, p.district_code, p.level, p.level_rank
    FROM ancestry AS a
    JOIN districts AS d ON d.district_code = a.district_code AND d.level_rank = a.level_rank
    JOIN districts AS p ON p.district_code = d.parent_code AND p.level_rank > d.level_rank
)
SELECT
    a.finest_code,
    a.district_code,
    a.level,
    a.level_rank,
    CASE WHEN f.is_admin_unit THEN f.area_km2 ELSE 0 END AS land_km2
FROM ancestry AS a
JOIN districts AS f ON f.district_code = a.finest_code AND f.level_rank = 0
