-- Location of the places site alerts name.
SELECT place_id, lon, lat FROM places
