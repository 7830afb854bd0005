-- Polygons (WKB, EPSG:4326) of one level's districts.
SELECT district_code, name, geometry_wkb FROM districts WHERE level = $level AND geometry_wkb IS NOT NULL
