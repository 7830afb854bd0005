-- Per operator, the drops and pseudonymization key ids (never keys) of local day $day's inputs
-- (presence_inputs). '' stands for a drop whose manifest named no key_id.
INSERT INTO indicator_operator_days (day, operator, drops, key_ids, run_id)
SELECT CAST($day AS DATE), i.operator, count(*), list_sort(list_distinct(list(coalesce(d.key_id, '')))), $run_id
FROM presence_inputs AS i
JOIN drops AS d USING (drop_id)
GROUP BY i.operator
