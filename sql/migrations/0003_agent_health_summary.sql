-- 0003_agent_health_summary: the seed's per-agent health materialized view.
--
-- One row per agent over its last 24 hours of heartbeats (the view is refreshed by the daily
-- maintenance job, and on demand). Each agent's heartbeats are read through the
-- (agent_id, timestamp DESC) index, pruned to the last day's partitions.
-- cpu_percent / memory_mb are read from the heartbeat's metrics JSON only when they are numbers:
-- one agent sending "n/a" must not make the whole refresh fail on a cast error.
CREATE MATERIALIZED VIEW agent_health_summary AS
SELECT a.agent_id,
       a.name,
       a.type,
       a.state,
       a.last_heartbeat,
       h.last_heartbeat_at,
       coalesce(h.heartbeat_count, 0) AS heartbeat_count,
       coalesce(h.total_errors, 0) AS total_errors,
       h.avg_cpu_percent,
       h.avg_memory_mb,
       now() AS refreshed_at
FROM agents a
LEFT JOIN LATERAL (
    SELECT max(hb.timestamp) AS last_heartbeat_at,
           count(*) AS heartbeat_count,
           sum(hb.error_count) AS total_errors,
           avg(CASE WHEN jsonb_typeof(hb.metrics -> 'cpu_percent') = 'number'
                    THEN (hb.metrics ->> 'cpu_percent')::double precision END) AS avg_cpu_percent,
           avg(CASE WHEN jsonb_typeof(hb.metrics -> 'memory_mb') = 'number'
                    THEN (hb.metrics ->> 'memory_mb')::double precision END) AS avg_memory_mb
    FROM agent_heartbeats hb
    WHERE hb.agent_id = a.agent_id
      AND hb.timestamp > now() - interval '24 hours'
) h ON true;

-- REFRESH MATERIALIZED VIEW CONCURRENTLY (readers are not blocked) needs a unique index.
CREATE UNIQUE INDEX agent_health_summary_agent_id_idx ON agent_health_summary (agent_id);
