-- A map's choropleth: district_density_published (never the internal district_density) for one
-- window ($window) at one level ($level). Suppressed rows carry NULL people and density.
SELECT district_code, people_estimate, density_per_km2, suppressed
FROM district_density_published
WHERE window_start = $window AND level = $level
