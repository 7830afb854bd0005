-- Published density windows.
SELECT DISTINCT window_start FROM district_density_published ORDER BY window_start
