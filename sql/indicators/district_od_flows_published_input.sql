-- Input of district_od_flows_published for local day $day: the flows of the one published level
-- $level (indicators.flow_level; flows of several levels would tie the rows together).
SELECT flow_kind, rule, origin_code, destination_code, subscribers AS value
FROM district_od_flows
WHERE day = CAST($day AS DATE) AND level = $level
ORDER BY flow_kind, rule, origin_code, destination_code
