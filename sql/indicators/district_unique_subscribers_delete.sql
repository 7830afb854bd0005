DELETE FROM district_unique_subscribers WHERE day = CAST($day AS DATE)
