-- District polygons of a map, at one level ($level), from the districts table (public boundaries).
SELECT district_code, level, name, parent_code, geometry_wkb
FROM districts
WHERE level = $level AND geometry_wkb IS NOT NULL
ORDER BY district_code
