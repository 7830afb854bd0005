-- Check: every baseline row rests on at least 3 observations and has a median and MAD.
-- Scope: the rows of run $run_id, or all.
SELECT count(*), count(*) FILTER (WHERE n_obs < 3 OR median IS NULL OR mad IS NULL),
       count(*) FILTER (WHERE kind = 'bootstrap')
FROM density_baseline AS b
WHERE NOT EXISTS (SELECT 1 FROM density_baseline WHERE run_id = $run_id) OR b.run_id = $run_id
