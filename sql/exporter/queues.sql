-- Work waiting: pending help requests and unprocessed agent messages, with the age of the
-- oldest (0 when none). An unprocessed message has status 'sent' (the seed's default) or
-- 'pending' (rows from before migration 0004). Both read only the small partial indexes on
-- those statuses.
SELECT
    (SELECT count(*) FROM help_requests WHERE status = 'pending') AS bgdb_help_requests_pending,
    (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)
     FROM help_requests WHERE status = 'pending') AS bgdb_help_requests_oldest_pending_age_seconds,
    (SELECT count(*) FROM agent_communications WHERE status IN ('sent', 'pending'))
        AS bgdb_agent_messages_pending,
    (SELECT coalesce(extract(epoch FROM now() - min(timestamp)), 0)
     FROM agent_communications WHERE status IN ('sent', 'pending'))
        AS bgdb_agent_messages_oldest_pending_age_seconds
