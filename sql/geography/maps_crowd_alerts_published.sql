-- A map's alerts: crowd_alerts_published (never the internal crowd_alerts) open at some time in
-- [$lo, $hi): opened before $hi and not closed (or last evaluated) before $lo. Same rule as the
-- auditor report's alerts section.
SELECT alert_id, level, place_id, place_name, state, severity, opened_window, last_window
FROM crowd_alerts_published
WHERE opened_window < $hi AND coalesce(closed_window, last_window) >= $lo
ORDER BY opened_window, alert_id
