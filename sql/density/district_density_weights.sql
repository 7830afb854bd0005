-- Site -> finest district weights per operator: the operator's own scope, or scope 'all'
-- for a site that has no weights under the operator's scope.
CREATE OR REPLACE TEMP TABLE effective_district_weights AS
WITH operators AS (
    SELECT DISTINCT operator FROM operator_shares
)
SELECT o.operator, w.site_id, w.district_code, w.weight
FROM bts_district_weights AS w
JOIN operators AS o ON w.scope = o.operator
UNION ALL
SELECT o.operator, w.site_id, w.district_code, w.weight
FROM bts_district_weights AS w
CROSS JOIN operators AS o
WHERE w.scope = 'all'
  AND NOT EXISTS (
      SELECT 1 FROM bts_district_weights AS own
      WHERE own.scope = o.operator AND own.site_id = w.site_id
  )
