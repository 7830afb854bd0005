DELETE FROM district_od_flows_published WHERE day = CAST($day AS DATE)
