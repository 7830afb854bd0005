-- The warehouse, attached read-only to the server's in-memory copy only while a refresh copies
-- the published tables out of it (crowd_platform/api/snapshot.py); the path is bound by code.
ATTACH {path} AS wh (READ_ONLY)
