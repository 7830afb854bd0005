DELETE FROM density_baseline WHERE day = CAST($day AS DATE)
