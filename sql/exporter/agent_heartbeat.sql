-- Per-agent heartbeat health, for at most max_agents agents (the most overdue first, so the
-- agents an alert is about are always among the labelled ones); agent_summary.sql gives totals.
-- Agents whose state says they were shut down are left out: they are not expected to beat.
--   last heartbeat = the newer of agents.last_heartbeat and the newest agent_heartbeats row of
--   the last day (one probe of the (agent_id, timestamp DESC) index per recent partition); an
--   agent that never beat counts from started_at, else from its registration.
--   missed = floor(age / heartbeat_interval_seconds): the consecutive beats that did not come.
WITH live AS (
    SELECT
        a.agent_id,
        a.started_at,
        hb.error_count,
        extract(epoch FROM now() - coalesce(
            greatest(a.last_heartbeat, hb.timestamp), a.started_at, a.created_at
        )) AS age
    FROM agents AS a
    LEFT JOIN LATERAL (
        SELECT h.timestamp, h.error_count
        FROM agent_heartbeats AS h
        WHERE h.agent_id = a.agent_id
          AND h.timestamp > now() - interval '1 day'
        ORDER BY h.timestamp DESC
        LIMIT 1
    ) AS hb ON true
    WHERE lower(a.state) NOT IN ('stopped', 'terminated', 'shutdown')
)
SELECT
    agent_id,
    greatest(age, 0) AS bgdb_agent_last_heartbeat_age_seconds,
    floor(greatest(age, 0) / %(heartbeat_interval_seconds)s) AS bgdb_agent_missed_heartbeats,
    error_count AS bgdb_agent_error_count,
    extract(epoch FROM now() - started_at) AS bgdb_agent_uptime_seconds
FROM live
ORDER BY age DESC, agent_id
LIMIT %(max_agents)s
