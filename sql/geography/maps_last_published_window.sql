-- The last window in [$lo, $hi) that district_density_published has rows for (a map's window).
SELECT max(window_start) FROM district_density_published
WHERE window_start >= $lo AND window_start < $hi
