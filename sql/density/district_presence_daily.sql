-- Unique subscribers per district per local day $day (density.local_timezone: presence_events
-- holds the windows from local midnight to the next, density/presence.py), each subscriber
-- counted at most once per district (any-style daily presence): a subscriber seen at sites s1..sn is in district d
-- with probability 1 - prod(1 - w(si, d)), where w(s, d) is the share of site s in d (summed
-- over d's finest units at coarser levels). The same subscriber in two kelurahan of one
-- kecamatan counts once at the kecamatan, so levels are not additive. Needs presence_events,
-- district_ancestry and effective_district_weights.
INSERT INTO district_presence_daily (day, level, district_code, subscribers, run_id)
WITH visits AS (
    SELECT operator, subscriber, site_id
    FROM presence_events
    GROUP BY operator, subscriber, site_id
),
site_weights AS (
    SELECT w.operator, w.site_id, a.level, a.district_code, least(sum(w.weight), 1.0) AS weight
    FROM effective_district_weights AS w
    JOIN district_ancestry AS a ON a.finest_code = w.district_code
    GROUP BY w.operator, w.site_id, a.level, a.district_code
),
presence AS (
    SELECT v.operator, v.subscriber, s.level, s.district_code,
           1 - product(1 - s.weight) AS probability
    FROM visits AS v
    JOIN site_weights AS s ON s.operator = v.operator AND s.site_id = v.site_id
    GROUP BY v.operator, v.subscriber, s.level, s.district_code
)
SELECT CAST($day AS DATE), level, district_code, sum(probability), $run_id
FROM presence
GROUP BY level, district_code
