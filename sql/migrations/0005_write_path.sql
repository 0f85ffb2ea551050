-- 0005_write_path: no GIN index on the insert-hot time-series tables (issue 24).
--
-- 0001 gave agent_heartbeats.metrics, performance_metrics.metadata (then `tags`) and
-- system_events.event_data a GIN (jsonb_path_ops) index for containment searches (@>). No query
-- of ours (sql/, exporters/, checks/, the seed's monitoring and maintenance queries) and none of
-- the seed's makes such a search: they read metrics->'cpu_usage' and filter by agent and time,
-- which the btree indexes serve. Yet these are the tables every agent writes to all day, and a
-- GIN index is the most expensive index to maintain on insert (one entry per JSON path; its
-- pending list merged into an index that grows with the partition). bench/write_path.py measured
-- what they cost on the write mix: see the README section "Write path".
--
-- Kept: the GIN indexes of tables written rarely and searched by content (agents.config,
-- agents.metadata, help_requests.context, agent_communications.content).
--
-- Who needs a containment search on one of these columns creates its index on the parent
-- (it cascades to every partition, present and future), knowing it costs the inserts that much:
--   CREATE INDEX agent_heartbeats_metrics_gin ON agent_heartbeats USING gin (metrics jsonb_path_ops);
--
-- Cost: catalog only. DROP INDEX on a partitioned index takes an ACCESS EXCLUSIVE lock on the
-- table and its partitions for the moment of the drop (inserts wait milliseconds, not a scan).
DROP INDEX IF EXISTS agent_heartbeats_metrics_gin;
DROP INDEX IF EXISTS performance_metrics_metadata_gin;
DROP INDEX IF EXISTS system_events_event_data_gin;
