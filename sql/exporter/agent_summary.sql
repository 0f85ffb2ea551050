-- Totals over all agents, beside the capped per-agent series of agent_heartbeat.sql (same
-- definitions, same index use). bgdb_agents_labelled < bgdb_agents_expected_heartbeat means some
-- agents have no per-agent series (max_agents); bgdb_agents_missed_heartbeats_max covers all.
WITH recent AS (
    SELECT agent_id, max(timestamp) AS timestamp
    FROM agent_heartbeats
    WHERE timestamp > now() - make_interval(secs => 3 * %(heartbeat_interval_seconds)s)
      AND timestamp <= now() + interval '1 hour'
    GROUP BY agent_id
),
stale AS (
    SELECT a.agent_id, o.timestamp
    FROM agents AS a
    CROSS JOIN LATERAL (
        SELECT h.timestamp
        FROM agent_heartbeats AS h
        WHERE h.agent_id = a.agent_id
          AND h.timestamp > now() - interval '1 day'
          AND h.timestamp <= now() + interval '1 hour'
        ORDER BY h.timestamp DESC
        LIMIT 1
    ) AS o
    WHERE NOT EXISTS (SELECT FROM recent AS r WHERE r.agent_id = a.agent_id)
      AND lower(a.state) NOT IN ('stopped', 'terminated', 'shutdown')
),
live AS (
    SELECT extract(epoch FROM now() - coalesce(
        greatest(a.last_heartbeat, r.timestamp, o.timestamp), a.started_at, a.created_at
    )) AS age
    FROM agents AS a
    LEFT JOIN recent AS r ON r.agent_id = a.agent_id
    LEFT JOIN stale AS o ON o.agent_id = a.agent_id
    WHERE lower(a.state) NOT IN ('stopped', 'terminated', 'shutdown')
)
SELECT
    count(*) AS bgdb_agents_expected_heartbeat,
    least(count(*), %(max_agents)s) AS bgdb_agents_labelled,
    coalesce(max(floor(greatest(age, 0) / %(heartbeat_interval_seconds)s)), 0)
        AS bgdb_agents_missed_heartbeats_max
FROM live
