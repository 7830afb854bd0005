-- What earlier versions of the indicator publication $dataset showed for local day $day: the
-- cells a rerun must treat as known (indicators.compute, kanon ``known``).
SELECT slice, cell, subscribers
FROM indicators_shown
WHERE dataset = $dataset AND day = CAST($day AS DATE)
