-- Active agents (not stopped) with their uptime and latest heartbeat.
-- The latest heartbeat is found by LATERAL probes of the (agent_id, timestamp DESC) index of
-- agent_heartbeats (backward index scan, LIMIT 1), never by a scan or sort of the heartbeats.
-- A probe of the whole table touches every partition's index (~46: 30 days back, 14 ahead,
-- DEFAULT), so the first probe is limited to now() +/- 1 day (2-3 partitions after pruning);
-- only an agent silent for more than a day pays for the probe of every partition.
-- Column names are reused by the exporter and the CLI: seconds, UTC timestamps. name may be
-- NULL (the seed's agents have none): the agent_id stands in.
SELECT a.agent_id,
       coalesce(a.name, a.agent_id) AS name,
       a.type,
       a.state,
       a.started_at,
       extract(epoch FROM now() - a.started_at)::double precision AS uptime_seconds,
       coalesce(h1.timestamp, h2.timestamp) AS last_heartbeat_at,
       extract(epoch FROM now() - coalesce(h1.timestamp, h2.timestamp))::double precision
           AS seconds_since_heartbeat,
       coalesce(h1.state, h2.state) AS heartbeat_state,
       coalesce(h1.error_count, h2.error_count) AS heartbeat_error_count
FROM agents a
LEFT JOIN LATERAL (
    SELECT hb.timestamp, hb.state, hb.error_count
    FROM agent_heartbeats hb
    WHERE hb.agent_id = a.agent_id
      AND hb.timestamp > now() - interval '1 day'
      AND hb.timestamp < now() + interval '1 day'
    ORDER BY hb.timestamp DESC
    LIMIT 1
) h1 ON true
LEFT JOIN LATERAL (
    SELECT hb.timestamp, hb.state, hb.error_count
    FROM agent_heartbeats hb
    WHERE h1.timestamp IS NULL
      AND hb.agent_id = a.agent_id
    ORDER BY hb.timestamp DESC
    LIMIT 1
) h2 ON true
WHERE a.stopped_at IS NULL
  AND a.state NOT IN ('stopped', 'terminated')
ORDER BY a.agent_id;
