-- Each operator's site -> ONE finest district: the district with the largest weight of the site
-- in effective_district_weights (ties: the larger district_code, so reruns agree). FlowKit maps a
-- cell to the admin unit its point falls in; here a site's coverage is shared between districts
-- by weights, and a per-subscriber location needs one district. Needs effective_district_weights.
CREATE OR REPLACE TEMP TABLE indicator_site_district AS
SELECT operator, site_id, arg_max(district_code, (weight, district_code)) AS district_code
FROM effective_district_weights
WHERE weight > 0
GROUP BY operator, site_id
