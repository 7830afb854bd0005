-- Several event feeds per operator: an operator has arrived for a window only when every one of
-- its event feeds expected then has arrived; the expected feeds that did not (or arrived with a
-- volume flag) are listed as '<operator>/<feed>', e.g. 'telkomsel/sms'.
ALTER TABLE window_completeness ADD COLUMN IF NOT EXISTS missing_feeds VARCHAR[];
