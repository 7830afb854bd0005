DELETE FROM district_presence_daily WHERE day >= CAST($first_day AS DATE) AND day <= CAST($last_day AS DATE)
