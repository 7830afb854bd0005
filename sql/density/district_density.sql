-- Site subscribers (bts_presence) apportioned to the finest districts by weight, rolled up to
-- every coarser level through district_ancestry, and scaled to people with the pooled
-- estimator: people = sum of all operators' subscribers / (sum of the market shares of the
-- operators reporting in the window) / multi_sim_factor. Each operator's subscribers /
-- market_share alone estimates everybody, so those must not be added up; and a late operator
-- drops out of the denominator instead of lowering the estimate.
-- Dense: every district at every level for every window that has accepted drops, so a
-- district with nobody is a 0, not a missing row. Needs temp tables district_ancestry,
-- effective_district_weights and operator_shares.
INSERT INTO district_density (window_start, level, district_code, subscribers, people_estimate,
                              density_per_km2, operators_reporting, drop_ids, run_id)
WITH site_presence AS (
    SELECT window_start, operator, place_id AS site_id, subscribers
    FROM bts_presence
    WHERE place_level = 'site' AND window_start >= $start AND window_start < $end
),
finest AS (
    SELECT s.window_start, s.operator, w.district_code, sum(s.subscribers * w.weight) AS subscribers
    FROM site_presence AS s
    JOIN effective_district_weights AS w ON w.operator = s.operator AND w.site_id = s.site_id
    GROUP BY s.window_start, s.operator, w.district_code
),
per_operator AS (
    SELECT f.window_start, a.level, a.district_code, f.operator, sum(f.subscribers) AS subscribers
    FROM finest AS f
    JOIN district_ancestry AS a ON a.finest_code = f.district_code
    GROUP BY f.window_start, a.level, a.district_code, f.operator
),
reporting AS (
    SELECT r.window_start, sum(o.market_share) AS market_share
    FROM (SELECT DISTINCT window_start, operator FROM site_presence) AS r
    JOIN operator_shares AS o ON o.operator = r.operator
    GROUP BY r.window_start
),
per_district AS (
    SELECT p.window_start, p.level, p.district_code,
           sum(p.subscribers) AS subscribers,
           sum(p.subscribers) / any_value(r.market_share) / $multi_sim_factor AS people_estimate,
           count(*) FILTER (WHERE p.subscribers > 0) AS operators_reporting
    FROM per_operator AS p
    JOIN reporting AS r ON r.window_start = p.window_start
    GROUP BY p.window_start, p.level, p.district_code
),
places AS (
    SELECT level, district_code, sum(land_km2) AS land_km2
    FROM district_ancestry
    GROUP BY level, district_code
),
windows AS (
    SELECT window_start, list(drop_id ORDER BY drop_id) AS drop_ids
    FROM drops
    WHERE coalesce(feed_kind, feed) = 'events' AND status = 'accepted' AND lake_path IS NOT NULL
      AND window_start >= $start AND window_start < $end
    GROUP BY window_start
)
SELECT
    w.window_start,
    p.level,
    p.district_code,
    coalesce(d.subscribers, 0),
    coalesce(d.people_estimate, 0),
    CASE WHEN p.land_km2 > 0 THEN coalesce(d.people_estimate, 0) / p.land_km2 END,
    coalesce(d.operators_reporting, 0),
    w.drop_ids,
    $run_id
FROM windows AS w
CROSS JOIN places AS p
LEFT JOIN per_district AS d
    ON d.window_start = w.window_start AND d.level = p.level AND d.district_code = p.district_code
