-- 0004_seed_schema: the seed's tables exactly (../shared/seed.txt, issue 18), ours on top.
--
-- 0001 rebuilt the schema without the seed's DDL; the seed's statements failed on it. Here every
-- seed column exists under the seed's name with a compatible type (text for VARCHAR(n), numeric
-- for NUMERIC, jsonb, timestamptz; our bigint identity keys stand for SERIAL), with the seed's
-- defaults and nullability, and nothing of ours (extra columns, checks, foreign keys) rejects a
-- row the seed's schema accepts. Existing rows are kept and converted; no column is dropped.
--
-- Deviations from the seed, on purpose:
--   * agent_heartbeats, performance_metrics, system_events keep `timestamp` NOT NULL: it is the
--     partition key and in the primary key (timestamp, id). The seed never inserts an explicit
--     NULL there (it omits the column: DEFAULT now()).
--   * agents keeps `id bigint` as primary key; the seed's key `agent_id` is UNIQUE NOT NULL, so
--     ON CONFLICT (agent_id) and the foreign keys to it work the same.
--   * agent_communications.from_agent/to_agent and llm_conversations.prompt stay nullable (the
--     seed says NOT NULL): existing rows hold NULLs (a NULL recipient is a broadcast, a sender
--     deleted was set NULL) and being more permissive never rejects a seed row.
--
-- Cost on big tables (read before running on a large database): this runs in one transaction
-- that holds ACCESS EXCLUSIVE locks on every table it alters until it commits.
--   * performance_metrics.value double precision -> numeric REWRITES every partition of
--     performance_metrics and rebuilds its indexes (time ~ its size; metric inserts wait).
--   * help_requests.priority integer -> text and help_responses.request_id bigint -> text
--     rewrite those two tables (small work-queue tables).
--   * Everything else is catalog-only: renames, DROP NOT NULL, defaults, dropped foreign keys,
--     added nullable columns (agent_heartbeats.created_at is added WITHOUT a default first so
--     that the largest table is not rewritten: rows older than this migration have NULL there),
--     numeric(14,6) -> numeric (relaxing a typmod). The UPDATEs that fill new columns touch only
--     the small tables (help_*, llm_conversations).
-- On PostgreSQL 13, numeric has no infinity: a performance_metrics value of +-Infinity becomes
-- NULL (a NOTICE counts them); 14+ keeps it.

-- The view reads columns changed below; recreated at the end with the seed's meaning.
DROP MATERIALIZED VIEW agent_health_summary;

------------------------------------------------------------------------------------------------
-- agents: the seed's INSERT INTO agents (agent_id, state, started_at) must work.
ALTER TABLE agents
    ALTER COLUMN name DROP NOT NULL,            -- readers show coalesce(name, agent_id)
    ALTER COLUMN type SET DEFAULT 'generic',
    ALTER COLUMN config DROP NOT NULL,
    ALTER COLUMN metadata DROP NOT NULL,
    ALTER COLUMN created_at DROP NOT NULL,
    ALTER COLUMN updated_at DROP NOT NULL;
CREATE INDEX agents_started_at_idx ON agents (started_at);

------------------------------------------------------------------------------------------------
-- agent_heartbeats (partitioned: ALTERs on the parent recurse to every partition).
ALTER TABLE agent_heartbeats
    ADD COLUMN created_at timestamptz,
    ALTER COLUMN metrics DROP NOT NULL,
    ALTER COLUMN error_count DROP NOT NULL;
ALTER TABLE agent_heartbeats ALTER COLUMN created_at SET DEFAULT now();

------------------------------------------------------------------------------------------------
-- performance_metrics: value numeric and nullable, tags -> metadata.
DO $$
BEGIN
    IF current_setting('server_version_num')::integer < 140000 THEN
        RAISE NOTICE 'bgdb: 0004: % performance_metrics value(s) +-Infinity become NULL'
                     ' (numeric has no infinity before PostgreSQL 14)',
            (SELECT count(*) FROM performance_metrics
             WHERE value IN ('Infinity'::float8, '-Infinity'::float8));
    END IF;
END
$$;
ALTER TABLE performance_metrics
    ALTER COLUMN value DROP NOT NULL,
    ALTER COLUMN value TYPE numeric USING
        CASE WHEN value IN ('Infinity'::float8, '-Infinity'::float8)
                  AND current_setting('server_version_num')::integer < 140000 THEN NULL
             ELSE value::numeric END,
    ALTER COLUMN tags DROP NOT NULL;
ALTER TABLE performance_metrics RENAME COLUMN tags TO metadata;
ALTER INDEX performance_metrics_tags_gin RENAME TO performance_metrics_metadata_gin;

------------------------------------------------------------------------------------------------
-- system_state
ALTER TABLE system_state
    ADD COLUMN updated_by text,
    ALTER COLUMN value DROP NOT NULL,
    ALTER COLUMN updated_at DROP NOT NULL;

------------------------------------------------------------------------------------------------
-- system_events: events of agents never registered are accepted (the seed has no foreign key).
ALTER TABLE system_events
    DROP CONSTRAINT system_events_agent_id_fkey,
    ALTER COLUMN severity DROP NOT NULL,
    ALTER COLUMN event_data DROP NOT NULL;

------------------------------------------------------------------------------------------------
-- help_requests: the seed's request_id / user_id / content, priority as 'low'/'medium'/'high'.
DROP INDEX help_requests_pending_idx;  -- on the integer priority; rebuilt on priority_rank
ALTER TABLE help_requests
    ADD COLUMN request_id text,
    ADD COLUMN user_id text,
    ADD COLUMN content text,
    ALTER COLUMN priority DROP DEFAULT,
    ALTER COLUMN priority TYPE text USING
        CASE WHEN priority >= 7 THEN 'high' WHEN priority <= 3 THEN 'low' ELSE 'medium' END,
    ALTER COLUMN priority DROP NOT NULL,
    ALTER COLUMN status DROP NOT NULL,
    ALTER COLUMN context DROP NOT NULL,
    ALTER COLUMN request_type DROP NOT NULL,
    ALTER COLUMN created_at DROP NOT NULL,
    ALTER COLUMN updated_at DROP NOT NULL;
-- Existing rows: a request_id that cannot collide with a client's, the asking agent as the
-- user, and the request itself as its text. The trigger would touch updated_at: disabled.
ALTER TABLE help_requests DISABLE TRIGGER help_requests_set_updated_at;
UPDATE help_requests
SET request_id = 'legacy-' || id,
    user_id = coalesce(requesting_agent_id, 'unknown'),
    content = request_type || coalesce(': ' || context::text, '');
ALTER TABLE help_requests ENABLE TRIGGER help_requests_set_updated_at;
ALTER TABLE help_requests
    ALTER COLUMN request_id SET NOT NULL,
    ALTER COLUMN user_id SET NOT NULL,
    ALTER COLUMN content SET NOT NULL,
    ALTER COLUMN priority SET DEFAULT 'medium',
    ADD CONSTRAINT help_requests_request_id_key UNIQUE (request_id),
    -- For ordering queues: text priorities do not sort by urgency. Unknown spellings rank 0.
    ADD COLUMN priority_rank smallint GENERATED ALWAYS AS (
        CASE priority WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END
    ) STORED;
-- Work queue: open requests, most urgent first, oldest first.
CREATE INDEX help_requests_pending_idx ON help_requests (priority_rank DESC, created_at)
    WHERE status = 'pending';
CREATE INDEX help_requests_user_idx ON help_requests (user_id);

------------------------------------------------------------------------------------------------
-- help_responses: request_id is the request's text request_id. Every existing response points
-- at an existing request (foreign key), whose request_id was just set to 'legacy-' || id.
ALTER TABLE help_responses
    DROP CONSTRAINT help_responses_request_id_fkey,
    DROP CONSTRAINT help_responses_responding_agent_id_fkey,
    ALTER COLUMN request_id TYPE text USING 'legacy-' || request_id,
    ADD COLUMN response_id text,
    ADD COLUMN content text,
    ADD COLUMN confidence_score numeric,
    ADD COLUMN sources jsonb,
    ALTER COLUMN response DROP NOT NULL,
    ALTER COLUMN response DROP DEFAULT,
    ALTER COLUMN created_at DROP NOT NULL;
ALTER TABLE help_responses RENAME COLUMN created_at TO generated_at;
ALTER TABLE help_responses RENAME COLUMN responding_agent_id TO agent_id;
ALTER INDEX help_responses_responding_agent_idx RENAME TO help_responses_agent_idx;
UPDATE help_responses SET response_id = 'legacy-' || id, content = response::text;
ALTER TABLE help_responses
    ALTER COLUMN response_id SET NOT NULL,
    ALTER COLUMN content SET NOT NULL,
    ADD CONSTRAINT help_responses_response_id_key UNIQUE (response_id),
    ADD CONSTRAINT help_responses_request_id_fkey FOREIGN KEY (request_id)
        REFERENCES help_requests (request_id) ON DELETE CASCADE;

------------------------------------------------------------------------------------------------
-- agent_communications: the seed's names; no foreign keys (the seed has none).
ALTER TABLE agent_communications
    DROP CONSTRAINT agent_communications_sender_id_fkey,
    DROP CONSTRAINT agent_communications_recipient_id_fkey,
    ALTER COLUMN status SET DEFAULT 'sent',
    ALTER COLUMN status DROP NOT NULL,
    ALTER COLUMN content DROP NOT NULL,
    ALTER COLUMN created_at DROP NOT NULL;
ALTER TABLE agent_communications RENAME COLUMN sender_id TO from_agent;
ALTER TABLE agent_communications RENAME COLUMN recipient_id TO to_agent;
ALTER TABLE agent_communications RENAME COLUMN created_at TO "timestamp";
ALTER INDEX agent_communications_sender_idx RENAME TO agent_communications_from_idx;
ALTER INDEX agent_communications_recipient_idx RENAME TO agent_communications_to_idx;
-- Unprocessed: 'sent' (the seed's default) or 'pending' (rows written before this migration).
DROP INDEX agent_communications_pending_idx;
CREATE INDEX agent_communications_pending_idx ON agent_communications (to_agent, "timestamp")
    WHERE status IN ('sent', 'pending');
CREATE INDEX agent_communications_type_idx ON agent_communications (message_type);

------------------------------------------------------------------------------------------------
-- llm_conversations
ALTER TABLE llm_conversations
    DROP CONSTRAINT llm_conversations_agent_id_fkey,
    ADD COLUMN conversation_id text,
    ADD COLUMN tokens_used integer,
    ADD COLUMN metadata jsonb,
    ALTER COLUMN model DROP NOT NULL,
    ALTER COLUMN cost TYPE numeric,
    ALTER COLUMN cost DROP NOT NULL,
    ALTER COLUMN cost DROP DEFAULT,   -- the seed's: an unknown cost is NULL, not 0
    ALTER COLUMN "timestamp" DROP NOT NULL;
UPDATE llm_conversations
SET conversation_id = 'legacy-' || id,
    tokens_used = least(tokens_input::bigint + tokens_output, 2147483647)::integer;
ALTER TABLE llm_conversations ALTER COLUMN conversation_id SET NOT NULL;

------------------------------------------------------------------------------------------------
-- agent_health_summary: the seed's columns with the seed's meaning - one row per agent with
-- heartbeats in the last 24 hours, last_heartbeat = its latest heartbeat then, avg_cpu = mean of
-- metrics->'cpu_usage' - and ours after them. Values that are not JSON numbers are skipped (one
-- agent sending "n/a" must not fail the whole refresh, where the seed's ::numeric cast would);
-- heartbeats written before this migration carry 'cpu_percent' (the same percentage), read when
-- 'cpu_usage' is absent.
CREATE MATERIALIZED VIEW agent_health_summary AS
SELECT h.agent_id,
       h.heartbeat_count,
       h.last_heartbeat,
       h.avg_cpu,
       coalesce(a.name, h.agent_id) AS name,
       a.type,
       a.state,
       h.total_errors,
       h.avg_memory_mb,
       now() AS refreshed_at
FROM (
    SELECT hb.agent_id,
           count(*) AS heartbeat_count,
           max(hb.timestamp) AS last_heartbeat,
           avg(CASE WHEN jsonb_typeof(hb.metrics -> 'cpu_usage') = 'number'
                    THEN (hb.metrics ->> 'cpu_usage')::numeric
                    WHEN hb.metrics -> 'cpu_usage' IS NULL
                         AND jsonb_typeof(hb.metrics -> 'cpu_percent') = 'number'
                    THEN (hb.metrics ->> 'cpu_percent')::numeric END) AS avg_cpu,
           coalesce(sum(hb.error_count), 0) AS total_errors,
           avg(CASE WHEN jsonb_typeof(hb.metrics -> 'memory_mb') = 'number'
                    THEN (hb.metrics ->> 'memory_mb')::numeric END) AS avg_memory_mb
    FROM agent_heartbeats hb
    WHERE hb.timestamp > now() - interval '24 hours'
    GROUP BY hb.agent_id
) h
LEFT JOIN agents a ON a.agent_id = h.agent_id;

-- REFRESH MATERIALIZED VIEW CONCURRENTLY (readers are not blocked) needs a unique index.
CREATE UNIQUE INDEX agent_health_summary_agent_id_idx ON agent_health_summary (agent_id);
