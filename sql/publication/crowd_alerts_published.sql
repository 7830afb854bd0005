-- Rebuild of crowd_alerts_published (the caller deletes first): every alert, its evidence read
-- from district_density_published, never from the internal tables' values.
INSERT INTO crowd_alerts_published (alert_id, level, place_id, place_name, state, severity, opened_window, last_window,
                                    closed_window, people_estimate, evidence_suppressed, windows, drop_ids,
                                    contract_versions, code_version, run_id, updated_at)
SELECT a.alert_id, a.level, a.place_id, a.place_name, a.state, a.severity, a.opened_window, a.last_window,
       a.closed_window, p.people_estimate, p.people_estimate IS NULL, a.windows, a.drop_ids,
       a.contract_versions, a.code_version, a.run_id, a.updated_at
FROM crowd_alerts AS a
LEFT JOIN district_density_published AS p
    ON a.level <> 'site' AND p.level = a.level AND p.district_code = a.place_id AND p.window_start = a.last_window
