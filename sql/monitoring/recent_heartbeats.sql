-- Heartbeats of the last 5 minutes, per agent.
-- Index-backed: the time range is a range scan of the (timestamp, id) primary key of the current
-- day's partition(s) only (runtime partition pruning on now()).
-- Agents absent from the result sent nothing for 5 minutes (see active_agents.sql and
-- system_health.sql: agents_missing_heartbeat).
-- cpu_usage is the seed's heartbeat metric (metrics->'cpu_usage'; heartbeats from before
-- migration 0004 carry the same percentage as 'cpu_percent', read when cpu_usage is absent, as
-- agent_health_summary does); it and memory_mb are averaged only where they are numbers, so one
-- agent sending "n/a" does not fail the query.
SELECT hb.agent_id,
       count(*) AS heartbeat_count,
       sum(hb.error_count) AS error_count,
       max(hb.timestamp) AS last_heartbeat_at,
       extract(epoch FROM now() - max(hb.timestamp))::double precision AS seconds_since_heartbeat,
       avg(CASE WHEN jsonb_typeof(hb.metrics -> 'cpu_usage') = 'number'
                THEN (hb.metrics ->> 'cpu_usage')::double precision
                WHEN hb.metrics -> 'cpu_usage' IS NULL
                     AND jsonb_typeof(hb.metrics -> 'cpu_percent') = 'number'
                THEN (hb.metrics ->> 'cpu_percent')::double precision END) AS avg_cpu_usage,
       avg(CASE WHEN jsonb_typeof(hb.metrics -> 'memory_mb') = 'number'
                THEN (hb.metrics ->> 'memory_mb')::double precision END) AS avg_memory_mb
FROM agent_heartbeats hb
WHERE hb.timestamp > now() - interval '5 minutes'
GROUP BY hb.agent_id
ORDER BY hb.agent_id;
