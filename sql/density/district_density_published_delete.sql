DELETE FROM district_density_published WHERE window_start >= $start AND window_start < $end
