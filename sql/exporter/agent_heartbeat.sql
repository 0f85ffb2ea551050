-- Per-agent heartbeat health, for at most max_agents agents (the most overdue first, so the
-- agents an alert is about are always among the labelled ones), after a first row with the
-- totals over all of them (no agent_id; its age is the most overdue agent's): the agent_summary
-- query reads its bgdb_agents_* samples from that row instead of repeating the whole search.
-- bgdb_agents_labelled < bgdb_agents_expected_heartbeat means some agents have no per-agent
-- series (max_agents); bgdb_agents_missed_heartbeats_max covers all.
-- Agents whose state says they were shut down are left out: they are not expected to beat.
--   last heartbeat = the newer of agents.last_heartbeat and the newest agent_heartbeats row.
--   That row comes from one range scan of the last 1.5 intervals (the primary key, today's
--   partitions only; the upper bound on timestamp skips the partitions made ahead for future
--   days), which holds the newest beat of every agent beating on time (one or two rows each),
--   reduced per agent by a hash aggregate: max() of [epoch, error_count] pairs is the newest
--   beat with its error_count, no sort. Only for the few agents silent for longer
--   (coalesce evaluates the subquery only then), probes of the (agent_id, timestamp DESC)
--   index: the last hour first (one daily partition but just after midnight), and only when
--   that finds nothing the rest of the last day (yesterday's partition too).
--   An agent that never beat counts from started_at, else from its registration.
--   missed = floor(age / heartbeat_interval_seconds), the consecutive beats that did not
--   come, is computed by the exporter (exporters/heartbeat.py).
-- Times are float8 seconds (date_part): cheaper than extract()'s numeric, and what the
-- exposition carries anyway.
WITH recent AS (
    SELECT agent_id, max(ARRAY[date_part('epoch', timestamp), error_count]) AS beat
    FROM agent_heartbeats
    WHERE timestamp > now() - make_interval(secs => 1.5 * %(heartbeat_interval_seconds)s)
      AND timestamp <= now() + interval '1 hour'
    GROUP BY agent_id
),
-- MATERIALIZED: beat is used twice below, and the probe subquery must not run twice.
live AS MATERIALIZED (
    SELECT
        a.agent_id,
        a.started_at,
        a.last_heartbeat,
        coalesce(a.started_at, a.created_at) AS since,
        coalesce(r.beat, (
            SELECT ARRAY[date_part('epoch', o.timestamp), o.error_count]
            FROM (
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
        )) AS beat
    FROM agents AS a
    LEFT JOIN recent AS r ON r.agent_id = a.agent_id
    WHERE lower(a.state) NOT IN ('stopped', 'terminated', 'shutdown')
),
aged AS MATERIALIZED (
    SELECT
        agent_id,
        started_at,
        beat[2] AS error_count,
        greatest(date_part('epoch', now()) - coalesce(
            greatest(date_part('epoch', last_heartbeat), beat[1]), date_part('epoch', since)
        ), 0) AS age
    FROM live
),
totals AS (
    SELECT count(*) AS n, coalesce(max(age), 0) AS worst FROM aged
)
-- One JSON value (json_rows in exporters/queries.py, the "columns" form): the column names once,
-- then one array per row. 200 rows of 6 values would cost the pure-Python client more than the
-- query, and 200 objects keyed by name cost the server more than arrays.
-- Ages are as of now(): exporters/heartbeat.py keeps these rows for a few seconds and adds the
-- time elapsed since at each scrape, so the metrics (missed = floor(age / interval), uptime,
-- the totals) are computed there.
SELECT json_build_object(
    'columns', json_build_array('agent_id', 'age', 'error_count', 'uptime', 'expected',
                                'labelled'),
    'rows', json_agg(json_build_array(
        t.agent_id, t.age, t.error_count, t.uptime, t.expected, t.labelled))
) AS rows
FROM (
    SELECT
        NULL AS agent_id,
        worst AS age,
        NULL::float8 AS error_count,
        NULL::float8 AS uptime,
        n AS expected,
        least(n, %(max_agents)s) AS labelled
    FROM totals
    UNION ALL
    (SELECT
        agent_id,
        age,
        error_count,
        date_part('epoch', now() - started_at),
        NULL,
        NULL
    FROM aged
    ORDER BY age DESC, agent_id
    LIMIT %(max_agents)s)
) AS t
