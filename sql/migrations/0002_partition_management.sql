-- accepts-checksum: cea17ceaf86c22e3284be39054d050df30c8a80bc0647012248c08aa123b7c47
--   (this file as first released: it said INCLUDING COMPRESSION on every major, which
--   PostgreSQL 13 cannot parse; databases that applied it on 14+ hold an equivalent function)
-- 0002_partition_management: create daily partitions ahead of time, drop expired ones.
--
-- Native partitioning with our own two functions rather than pg_partman: pg_partman is an extra
-- Debian package (postgresql-15-partman), an extension that needs a superuser to install and
-- its background worker in shared_preload_libraries (a restart) to run maintenance by itself.
-- What this schema needs is small - daily partitions of three tables, made some days ahead and
-- dropped after 30 days - and fits in two functions that the scheduled maintenance jobs call
-- (sql/maintenance/daily.sql and weekly.sql) and that return what they did, row by row.
--
-- Managed tables: every range-partitioned table in schema public whose partition key is one
-- timestamptz column (agent_heartbeats, performance_metrics, system_events, and any later
-- migration's table built the same way). Partitions cover one UTC day [d, d+1) and are named
-- <table>_pYYYYMMDD; the DEFAULT partition <table>_default holds rows of days without one.
--
-- Both functions are SECURITY DEFINER (they run as the schema owner, so new partitions are owned
-- by it and get its default privileges whoever calls them) and are not executable by PUBLIC.
-- They take an advisory lock so two maintenance runs do not collide, and a 5 s lock_timeout so a
-- long query holding a lock on a table makes them skip that partition (reported, retried next
-- run) instead of queueing every agent's insert behind their lock request.

-- The tables the two functions manage, with their partition key and DEFAULT partition.
CREATE FUNCTION bgdb_partitioned_tables()
RETURNS TABLE (parent regclass, schema_name name, table_name name, key_column name,
               default_partition regclass)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass, n.nspname, c.relname, a.attname,
           nullif(pt.partdefid, 0)::regclass
    FROM pg_partitioned_table pt
    JOIN pg_class c ON c.oid = pt.partrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
    WHERE pt.partstrat = 'r'
      AND pt.partnatts = 1
      AND a.atttypid = 'timestamptz'::regtype
      AND n.nspname = 'public'
      AND NOT c.relispartition
    ORDER BY c.relname
$$;

-- Create the daily partitions for from_day .. from_day + days_ahead (from_day defaults to today,
-- UTC) that do not exist yet. Rows already sitting in the DEFAULT partition for such a day are
-- moved into the new partition (ATTACH would otherwise fail on them).
CREATE FUNCTION bgdb_partition_premake(days_ahead integer DEFAULT 14, from_day date DEFAULT NULL)
RETURNS TABLE (parent_table text, partition_name text, action text, row_count bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    t         record;
    d         date;
    first_day date := coalesce(from_day, (now() AT TIME ZONE 'UTC')::date);
    part      text;
    lo        timestamptz;
    hi        timestamptz;
    moved     bigint;
    -- LIKE ... INCLUDING COMPRESSION exists from PostgreSQL 14 on (Debian 11 ships 13).
    compression text := CASE WHEN current_setting('server_version_num')::int >= 140000
                             THEN ' INCLUDING COMPRESSION' ELSE '' END;
BEGIN
    IF days_ahead IS NULL OR days_ahead < 0 THEN
        RAISE EXCEPTION 'bgdb_partition_premake: days_ahead must be >= 0, got %', days_ahead;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('bgdb_partition_maintenance'));

    FOR t IN SELECT * FROM public.bgdb_partitioned_tables() LOOP
        FOR d IN SELECT g::date FROM generate_series(first_day, first_day + days_ahead, '1 day') g
        LOOP
            part := format('%s_p%s', t.table_name, to_char(d, 'YYYYMMDD'));
            CONTINUE WHEN to_regclass(format('%I.%I', t.schema_name, part)) IS NOT NULL;
            lo := d::timestamp AT TIME ZONE 'UTC';
            hi := (d + 1)::timestamp AT TIME ZONE 'UTC';
            moved := 0;
            BEGIN  -- a subtransaction: a lock timeout skips this partition only
                -- LIKE + ATTACH rather than CREATE ... PARTITION OF: ATTACH needs only a SHARE
                -- UPDATE EXCLUSIVE lock on the parent, so agents keep inserting meanwhile.
                EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                               ' INCLUDING STORAGE%s)',
                               t.schema_name, part, t.parent, compression);
                IF t.default_partition IS NOT NULL THEN
                    -- Lock first: a row routed to the DEFAULT partition between the move and the
                    -- ATTACH would make the ATTACH fail.
                    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', t.default_partition);
                    EXECUTE format('WITH m AS (DELETE FROM %s WHERE %I >= $1 AND %I < $2 RETURNING *)'
                                   ' INSERT INTO %I.%I SELECT * FROM m',
                                   t.default_partition, t.key_column, t.key_column,
                                   t.schema_name, part)
                        USING lo, hi;
                    GET DIAGNOSTICS moved = ROW_COUNT;
                END IF;
                EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                               t.parent, t.schema_name, part, lo, hi);
                parent_table := t.table_name;
                partition_name := part;
                action := 'created';
                row_count := moved;
                RETURN NEXT;
            EXCEPTION WHEN lock_not_available THEN
                parent_table := t.table_name;
                partition_name := part;
                action := 'skipped: lock timeout';
                row_count := NULL;
                RETURN NEXT;
            END;
        END LOOP;
    END LOOP;
END
$$;

-- Remove data older than keep_days: drop every partition whose upper bound is at or before
-- now() - keep_days (it holds only expired rows; a partition straddling the cutoff waits for the
-- next run), and delete expired rows from the DEFAULT partition in batches of batch_size.
CREATE FUNCTION bgdb_partition_retention(keep_days integer DEFAULT 30,
                                         batch_size integer DEFAULT 10000)
RETURNS TABLE (parent_table text, partition_name text, action text, row_count bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
SET lock_timeout = '5s'
AS $$
DECLARE
    t       record;
    p       record;
    cutoff  timestamptz;
    n       bigint;
    total   bigint;
BEGIN
    -- Guard against a typo wiping the tables: keep at least one day.
    IF keep_days IS NULL OR keep_days < 1 THEN
        RAISE EXCEPTION 'bgdb_partition_retention: keep_days must be >= 1, got %', keep_days;
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'bgdb_partition_retention: batch_size must be >= 1, got %', batch_size;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('bgdb_partition_maintenance'));
    cutoff := now() - make_interval(days => keep_days);

    FOR t IN SELECT * FROM public.bgdb_partitioned_tables() LOOP
        FOR p IN
            SELECT c.oid::regclass AS rel, c.relname,
                   -- With TimeZone = UTC the bound prints as '2024-01-02 00:00:00+00'.
                   substring(pg_get_expr(c.relpartbound, c.oid)
                             FROM $re$TO \('([^']+)'\)$re$)::timestamptz AS upper_bound
            FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = t.parent
              AND c.oid IS DISTINCT FROM t.default_partition::oid
            ORDER BY upper_bound
        LOOP
            CONTINUE WHEN p.upper_bound IS NULL OR p.upper_bound > cutoff;
            BEGIN
                EXECUTE format('DROP TABLE %s', p.rel);
                parent_table := t.table_name;
                partition_name := p.relname;
                action := 'dropped';
                row_count := NULL;
                RETURN NEXT;
            EXCEPTION WHEN lock_not_available THEN
                parent_table := t.table_name;
                partition_name := p.relname;
                action := 'skipped: lock timeout';
                row_count := NULL;
                RETURN NEXT;
            END;
        END LOOP;

        CONTINUE WHEN t.default_partition IS NULL;
        -- The DEFAULT partition should hold few rows (only days premake had not covered); delete
        -- by ctid batches so that no single statement holds millions of row locks.
        total := 0;
        LOOP
            EXECUTE format('DELETE FROM %1$s WHERE ctid = ANY (ARRAY('
                           'SELECT ctid FROM %1$s WHERE %2$I < $1 LIMIT $2))',
                           t.default_partition, t.key_column)
                USING cutoff, batch_size;
            GET DIAGNOSTICS n = ROW_COUNT;
            total := total + n;
            EXIT WHEN n < batch_size;
        END LOOP;
        IF total > 0 THEN
            parent_table := t.table_name;
            partition_name := (SELECT relname FROM pg_class WHERE oid = t.default_partition);
            action := 'deleted';
            row_count := total;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

-- Only the owner (and superusers, i.e. the maintenance jobs) may add or drop partitions.
REVOKE ALL ON FUNCTION bgdb_partition_premake(integer, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION bgdb_partition_retention(integer, integer) FROM PUBLIC;

-- Partitions exist from the first deploy on; the daily job keeps 14 days ahead from then on.
SELECT count(*) FROM bgdb_partition_premake(14);
