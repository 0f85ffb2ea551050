-- Per-agent heartbeat health, for at most max_agents agents (the most overdue first, so the
-- agents an alert is about are always among the labelled ones), with the totals over all of them
-- on every row (window aggregates over the same pass): the agent_summary query reads its
-- bgdb_agents_* samples from the first row instead of repeating the whole search.
-- bgdb_agents_labelled < bgdb_agents_expected_heartbeat means some agents have no per-agent
-- series (max_agents); bgdb_agents_missed_heartbeats_max covers all.
-- Agents whose state says they were shut down are left out: they are not expected to beat.
--   last heartbeat = the newer of agents.last_heartbeat and the newest agent_heartbeats row.
--   That row comes from one range scan of the last 3 intervals (the primary key, today's
--   partitions only), and, for the few agents silent for longer, from probes of the
--   (agent_id, timestamp DESC) index: the last hour first (one daily partition but just after
--   midnight), and only when that finds nothing the rest of the last day (yesterday's partition
--   too). The upper bound on timestamp lets the planner skip the partitions made ahead for
--   future days.
--   An agent that never beat counts from started_at, else from its registration.
--   missed = floor(age / heartbeat_interval_seconds): the consecutive beats that did not come.
WITH recent AS (
    SELECT DISTINCT ON (agent_id) agent_id, timestamp, error_count
    FROM agent_heartbeats
    WHERE timestamp > now() - make_interval(secs => 3 * %(heartbeat_interval_seconds)s)
      AND timestamp <= now() + interval '1 hour'
    ORDER BY agent_id, timestamp DESC
),
stale AS (
    -- Agents silent for over 3 intervals (normally few): their newest row of the last day (the
    -- UNION ALL stops at its first branch's row: the newest of the last hour, when there is one).
    SELECT a.agent_id, o.timestamp, o.error_count
    FROM agents AS a
    CROSS JOIN LATERAL (
        (SELECT h.timestamp, h.error_count
        FROM agent_heartbeats AS h
        WHERE h.agent_id = a.agent_id
          AND h.timestamp > now() - interval '1 hour'
          AND h.timestamp <= now() + interval '1 hour'
        ORDER BY h.timestamp DESC
        LIMIT 1)
        UNION ALL
        (SELECT h.timestamp, h.error_count
        FROM agent_heartbeats AS h
        WHERE h.agent_id = a.agent_id
          AND h.timestamp > now() - interval '1 day'
          AND h.timestamp <= now() - interval '1 hour'
        ORDER BY h.timestamp DESC
        LIMIT 1)
        LIMIT 1
    ) AS o
    WHERE NOT EXISTS (SELECT FROM recent AS r WHERE r.agent_id = a.agent_id)
      AND lower(a.state) NOT IN ('stopped', 'terminated', 'shutdown')
),
live AS (
    SELECT
        a.agent_id,
        a.started_at,
        coalesce(r.error_count, o.error_count) AS error_count,
        extract(epoch FROM now() - coalesce(
            greatest(a.last_heartbeat, r.timestamp, o.timestamp), a.started_at, a.created_at
        )) AS age
    FROM agents AS a
    LEFT JOIN recent AS r ON r.agent_id = a.agent_id
    LEFT JOIN stale AS o ON o.agent_id = a.agent_id
    WHERE lower(a.state) NOT IN ('stopped', 'terminated', 'shutdown')
)
SELECT
    agent_id,
    greatest(age, 0) AS bgdb_agent_last_heartbeat_age_seconds,
    floor(greatest(age, 0) / %(heartbeat_interval_seconds)s) AS bgdb_agent_missed_heartbeats,
    error_count AS bgdb_agent_error_count,
    extract(epoch FROM now() - started_at) AS bgdb_agent_uptime_seconds,
    count(*) OVER () AS bgdb_agents_expected_heartbeat,
    least(count(*) OVER (), %(max_agents)s) AS bgdb_agents_labelled,
    max(floor(greatest(age, 0) / %(heartbeat_interval_seconds)s)) OVER ()
        AS bgdb_agents_missed_heartbeats_max
FROM live
ORDER BY age DESC, agent_id
LIMIT %(max_agents)s
