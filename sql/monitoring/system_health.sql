-- System health overview: one row.
-- Every count is index-backed: agents is small; "missing heartbeat" is one (agent_id, timestamp
-- DESC) probe per active agent; recent heartbeats/events are primary-key (timestamp) range scans
-- of the current partition; errors use the partial index on ERROR/CRITICAL events; pending help
-- requests and unprocessed messages (status 'sent' or 'pending') read partial indexes.
SELECT
    (SELECT count(*) FROM agents) AS agents_total,
    (SELECT count(*) FROM agents a
      WHERE a.stopped_at IS NULL AND a.state NOT IN ('stopped', 'terminated')) AS agents_active,
    (SELECT count(*) FROM agents a
      WHERE a.stopped_at IS NULL AND a.state NOT IN ('stopped', 'terminated')
        AND NOT EXISTS (SELECT 1 FROM agent_heartbeats hb
                        WHERE hb.agent_id = a.agent_id
                          AND hb.timestamp > now() - interval '5 minutes'))
        AS agents_missing_heartbeat,
    (SELECT count(*) FROM agent_heartbeats hb
      WHERE hb.timestamp > now() - interval '5 minutes') AS heartbeats_last_5m,
    (SELECT count(*) FROM system_events e
      WHERE e.timestamp > now() - interval '1 hour'
        AND e.severity IN ('ERROR', 'CRITICAL')) AS error_events_last_hour,
    (SELECT count(*) FROM help_requests r WHERE r.status = 'pending') AS help_requests_pending,
    (SELECT count(*) FROM agent_communications c WHERE c.status IN ('sent', 'pending'))
        AS messages_pending,
    (SELECT count(*) FROM pg_stat_activity s WHERE s.datname = current_database())
        AS connections,
    current_setting('max_connections')::integer AS max_connections,
    pg_database_size(current_database()) AS database_size_bytes,
    pg_is_in_recovery() AS in_recovery;
