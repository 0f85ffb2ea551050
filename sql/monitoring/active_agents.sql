-- Active agents (not stopped) with their uptime and latest heartbeat.
-- The latest heartbeat is one LATERAL probe per agent of the (agent_id, timestamp DESC) index of
-- agent_heartbeats (a backward index scan, LIMIT 1), never a scan or sort of the heartbeats.
-- Column names are reused by the exporter and the CLI: seconds, UTC timestamps.
SELECT a.agent_id,
       a.name,
       a.type,
       a.state,
       a.started_at,
       extract(epoch FROM now() - a.started_at)::double precision AS uptime_seconds,
       h.timestamp AS last_heartbeat_at,
       extract(epoch FROM now() - h.timestamp)::double precision AS seconds_since_heartbeat,
       h.state AS heartbeat_state,
       h.error_count AS heartbeat_error_count
FROM agents a
LEFT JOIN LATERAL (
    SELECT hb.timestamp, hb.state, hb.error_count
    FROM agent_heartbeats hb
    WHERE hb.agent_id = a.agent_id
    ORDER BY hb.timestamp DESC
    LIMIT 1
) h ON true
WHERE a.stopped_at IS NULL
  AND a.state NOT IN ('stopped', 'terminated')
ORDER BY a.agent_id;
