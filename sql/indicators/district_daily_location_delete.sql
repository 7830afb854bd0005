DELETE FROM district_daily_location WHERE day = CAST($day AS DATE)
