-- What the agents wrote in the last 5 minutes (range scans of the (timestamp, id) primary keys,
-- pruned to today's partitions; the upper bound skips the partitions made ahead for future days).
-- "OR timestamp IS NULL" never matches (timestamp is the primary key's first column): it makes
-- the planner combine bitmaps, so the heartbeats' heap is read page by page (~130 page visits
-- for ~5,000 rows at 1,000 agents) instead of tuple by tuple through the index (~4,600), which
-- halves the cost of this count (error_count is not in the index, so the heap must be read).
-- Operation error rate (the seed's "error rate > 5 %"): agents record each operation's outcome
-- as a system_events row, so
--     bgdb_operation_error_ratio = events with severity ERROR or CRITICAL / all events,
-- over the last 5 minutes, 0 when there was none. Heartbeats' own error_count, summed over the
-- same window, is beside it (bgdb_agent_heartbeat_errors_5m).
WITH hb AS (
    SELECT count(*) AS beats, coalesce(sum(error_count), 0) AS errors
    FROM agent_heartbeats
    WHERE (timestamp > now() - interval '5 minutes' AND timestamp <= now() + interval '1 hour')
       OR timestamp IS NULL
),
ev AS (
    SELECT
        count(*) AS total,
        count(*) FILTER (WHERE upper(severity) IN ('ERROR', 'CRITICAL')) AS errors
    FROM system_events
    WHERE timestamp > now() - interval '5 minutes'
)
SELECT
    hb.beats AS bgdb_agent_heartbeats_5m,
    hb.errors AS bgdb_agent_heartbeat_errors_5m,
    ev.total AS bgdb_operations_5m,
    ev.errors AS bgdb_operation_errors_5m,
    coalesce(ev.errors::float8 / nullif(ev.total, 0), 0) AS bgdb_operation_error_ratio
FROM hb, ev
