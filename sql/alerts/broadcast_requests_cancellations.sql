-- Retracted alerts whose opened or escalated request was written for an operator that has no
-- cancellation yet: one cancellation per (alert, operator), to every cell it was sent to.
SELECT a.alert_id, a.level, a.place_id, a.place_name, a.severity, a.opened_window, r.operator,
       list_sort(list_distinct(flatten(list(r.cell_ids)))) AS cell_ids
FROM crowd_alerts a
JOIN broadcast_requests r USING (alert_id)
WHERE a.state = 'retracted'
  AND r.transition IN ('opened', 'escalated')
  AND NOT EXISTS (SELECT 1 FROM broadcast_requests c
                  WHERE c.alert_id = a.alert_id AND c.operator = r.operator AND c.transition = 'retracted')
GROUP BY a.alert_id, a.level, a.place_id, a.place_name, a.severity, a.opened_window, r.operator
ORDER BY a.alert_id, r.operator
