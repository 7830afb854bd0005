-- Drops (any feed) of the windows [$start, $end) that are in quarantine or were rejected from
-- it, per operator and feed. A released drop that passed on its second try is not counted.
SELECT operator, feed, count(*) AS drops
FROM drops
WHERE status IN ('quarantined', 'rejected')
  AND window_start >= $start AND window_start < $end
GROUP BY operator, feed
ORDER BY operator, feed
