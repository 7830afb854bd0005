-- Physical places: co-located sites of all operators (centres within geography.colocation_radius_m)
-- form one place. A site alert is about a place, not an operator: one crowd, one alert, and its
-- broadcast reaches every operator with cells there. place_id is the place's smallest site_id.
CREATE TABLE IF NOT EXISTS site_places (
    site_id   VARCHAR PRIMARY KEY,
    place_id  VARCHAR NOT NULL,
    lon       DOUBLE NOT NULL,   -- the place's centre (mean of its sites)
    lat       DOUBLE NOT NULL
);
