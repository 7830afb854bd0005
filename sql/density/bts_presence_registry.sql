-- The registry columns presence reads (bts_presence_cells.sql), copied out of the warehouse so
-- the counting can run in a private engine while the warehouse is free for other steps.
SELECT operator, cell_id, site_id, valid_from, valid_to
FROM bts_registry
