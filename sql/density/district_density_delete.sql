DELETE FROM district_density WHERE window_start >= $start AND window_start < $end
