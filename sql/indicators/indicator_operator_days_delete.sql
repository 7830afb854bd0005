DELETE FROM indicator_operator_days WHERE day = CAST($day AS DATE)
