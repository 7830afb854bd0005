DELETE FROM subscriber_daily_location WHERE day = CAST($day AS DATE)
