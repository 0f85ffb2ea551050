-- Work waiting: pending help requests and unprocessed agent messages, with the age of the
-- oldest (0 when none). Both read only the small partial indexes WHERE status = 'pending'.
SELECT
    (SELECT count(*) FROM help_requests WHERE status = 'pending') AS bgdb_help_requests_pending,
    (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)
     FROM help_requests WHERE status = 'pending') AS bgdb_help_requests_oldest_pending_age_seconds,
    (SELECT count(*) FROM agent_communications WHERE status = 'pending')
        AS bgdb_agent_messages_pending,
    (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)
     FROM agent_communications WHERE status = 'pending')
        AS bgdb_agent_messages_oldest_pending_age_seconds
