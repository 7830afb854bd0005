DELETE FROM district_od_flows WHERE day = CAST($day AS DATE)
