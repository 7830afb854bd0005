-- Public geography only: names, codes, levels, parents, land area and polygons (no population).
CREATE TABLE main.districts AS
SELECT district_code, level, level_rank, name, parent_code, area_km2, land_area_km2, geometry_wkb
FROM wh.main.districts
