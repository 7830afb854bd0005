-- One published alert.
SELECT * FROM crowd_alerts_published WHERE alert_id = $alert_id
