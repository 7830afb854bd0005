-- Remember the values a version of the indicator publication $dataset shows for local day $day
-- (registered frame indicators_shown_frame: slice, cell, subscribers; shown cells only), each
-- (slice, cell, value) once.
INSERT INTO indicators_shown (dataset, day, slice, cell, subscribers)
SELECT DISTINCT $dataset, CAST($day AS DATE), f.slice, f.cell, f.subscribers
FROM indicators_shown_frame AS f
WHERE f.subscribers IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM indicators_shown AS s
                  WHERE s.dataset = $dataset AND s.day = CAST($day AS DATE) AND s.slice = f.slice
                    AND s.cell = f.cell AND s.subscribers = f.subscribers)
