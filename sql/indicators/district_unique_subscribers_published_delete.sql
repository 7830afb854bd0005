DELETE FROM district_unique_subscribers_published WHERE day = CAST($day AS DATE)
