-- Totals over all agents, beside the capped per-agent series of agent_heartbeat.sql (same
-- definitions). bgdb_agents_labelled < bgdb_agents_expected_heartbeat means some agents have
-- no per-agent series (max_agents); bgdb_agents_missed_heartbeats_max still covers all of them.
WITH live AS (
    SELECT extract(epoch FROM now() - coalesce(
        greatest(a.last_heartbeat, hb.timestamp), a.started_at, a.created_at
    )) AS age
    FROM agents AS a
    LEFT JOIN LATERAL (
        SELECT h.timestamp
        FROM agent_heartbeats AS h
        WHERE h.agent_id = a.agent_id
          AND h.timestamp > now() - interval '1 day'
        ORDER BY h.timestamp DESC
        LIMIT 1
    ) AS hb ON true
    WHERE lower(a.state) NOT IN ('stopped', 'terminated', 'shutdown')
)
SELECT
    count(*) AS bgdb_agents_expected_heartbeat,
    least(count(*), %(max_agents)s) AS bgdb_agents_labelled,
    coalesce(max(floor(greatest(age, 0) / %(heartbeat_interval_seconds)s)), 0)
        AS bgdb_agents_missed_heartbeats_max
FROM live
