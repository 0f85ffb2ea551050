-- system_events of the last 5 minutes by severity and type. event_type is free text: at most
-- max_label_values (severity, type) pairs, the most frequent first.
SELECT
    upper(severity) AS severity,
    event_type,
    count(*) AS bgdb_system_events_5m
FROM system_events
WHERE timestamp > now() - interval '5 minutes'
GROUP BY 1, 2
ORDER BY count(*) DESC, 1, 2
LIMIT %(max_label_values)s
