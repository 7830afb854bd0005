-- Quarantined drops of windows [$start, $end) with the rules they failed and the rows those
-- rules found (GX cross-check counts excluded: the DuckDB rules decide).
SELECT d.drop_id, d.operator,
       list(DISTINCT c.rule ORDER BY c.rule) FILTER (WHERE NOT c.passed) AS rules,
       coalesce(sum(c.unexpected_count) FILTER (WHERE NOT c.passed AND c.engine <> 'gx'), 0) AS unexpected
FROM drops d LEFT JOIN check_results c USING (drop_id)
WHERE d.status = 'quarantined' AND d.window_start >= $start AND d.window_start < $end
GROUP BY ALL
ORDER BY d.drop_id
