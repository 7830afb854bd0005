-- Several event feeds per operator (e.g. calls, sms): a drop's feed kind (contracts' customProperties
-- feed_kind, by default the feed name), recorded as the drop arrives. Presence, completeness and
-- freshness read every drop of kind 'events' as coalesce(feed_kind, feed): a row without a kind
-- (written before the column) is of its feed's default kind.
ALTER TABLE drops ADD COLUMN IF NOT EXISTS feed_kind VARCHAR;
