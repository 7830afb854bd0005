-- Rerunning a window range replaces it (idempotent): delete, then insert, in one transaction.
DELETE FROM bts_presence WHERE window_start >= $start AND window_start < $end
