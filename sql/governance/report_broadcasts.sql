-- The auditor report's broadcasts: requests written for alerts of the data period [$lo, $hi)
-- (alerts open at some time in it), per operator and transition, with when they were written.
SELECT r.operator, r.transition, count(*) AS requests, sum(len(r.cell_ids)) AS cells,
       count(*) FILTER (WHERE r.delivered_at IS NOT NULL) AS delivered,
       strftime(min(r.created_at), '%Y-%m-%d %H:%M') AS first_created,
       strftime(max(r.created_at), '%Y-%m-%d %H:%M') AS last_created
FROM broadcast_requests AS r
JOIN crowd_alerts_published AS a USING (alert_id)
WHERE a.opened_window < $hi AND coalesce(a.closed_window, a.last_window) >= $lo
GROUP BY r.operator, r.transition
ORDER BY r.operator, r.transition
