DELETE FROM district_daily_location_published WHERE day = CAST($day AS DATE)
