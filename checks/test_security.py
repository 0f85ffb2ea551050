"""The security section of `bgdb check`: the CIS PostgreSQL Benchmark controls the bundle covers,
each from the live host (SQL and file state). The controls left to the environment are listed in
checks/cis.py and printed as not applicable by the report."""

from __future__ import annotations

import shlex

import pytest

from bgdb.remote import Target
from deploy.settings import SET_USER_MAJORS, SET_USER_MISSING


def _mode_owner(t: Target, path: str) -> tuple[str, str]:
    out = t.host.run(f"stat -c '%a %U' {shlex.quote(path)}")
    assert out.rc == 0, f"{path}: {out.stderr.strip()}"
    mode, owner = out.stdout.split()
    return mode.zfill(4), owner


def test_cis_3_1_3_logging_collector(db: Target) -> None:
    """CIS 3.1.3-3.1.9: logging collector on, 0600 files in the cluster's log directory, rotated"""
    assert db.setting("logging_collector") == "on", \
        "logging_collector = off: the log has no file mode or rotation of its own (CIS 3.1.3)"
    mode = db.setting("log_file_mode")
    assert mode == "0600", f"log_file_mode = {mode}, expected 0600 (CIS 3.1.5)"
    directory = db.setting("log_directory")
    data = db.setting("data_directory")
    assert not directory.startswith("/") or directory.startswith(f"{data}/"), \
        f"log_directory = {directory}: outside the cluster's data directory {data}"
    age = db.setting("log_rotation_age")
    assert age not in ("0", "-1"), f"log_rotation_age = {age}: the log is never rotated (CIS 3.1.8)"
    current = db.value("SELECT pg_current_logfile()")
    assert current, "pg_current_logfile() is empty: the collector writes no file"
    path = current if current.startswith("/") else f"{data}/{current}"
    got, owner = _mode_owner(db, path)
    assert (got, owner) == ("0600", "postgres"), \
        f"{path} is mode {got} owned by {owner}, expected 0600 postgres (CIS 3.1.5)"


def test_cis_3_1_22_log_error_verbosity(db: Target) -> None:
    """CIS 3.1.22: log_error_verbosity verbose (SQLSTATE and source location logged)"""
    got = db.setting("log_error_verbosity")
    assert got == "verbose", f"log_error_verbosity = {got}, expected verbose (CIS 3.1.22)"


def test_cis_7_2_log_replication_commands(db: Target) -> None:
    """CIS 7.2: replication commands (slots, base backups) are logged"""
    got = db.setting("log_replication_commands")
    assert got == "on", f"log_replication_commands = {got}: replication commands unlogged (CIS 7.2)"


def test_cis_2_1_postgres_umask(db: Target) -> None:
    """CIS 2.1: the postgres OS user's login shell umask is 0077"""
    out = db.host.run("cd / && runuser -l postgres -s /bin/sh -c umask")
    got = out.stdout.strip()
    assert got == "0077", f"postgres user's umask is {got or out.stderr.strip()}, expected 0077 " \
        "(files it creates are readable by others) (CIS 2.1)"


def test_cis_2_6_socket_permissions(db: Target) -> None:
    """CIS 2.6: the Unix socket is 0770, not open to every local user"""
    setting = db.setting("unix_socket_permissions")
    sock = f"/var/run/postgresql/.s.PGSQL.{db.pg.port}"
    mode, _ = _mode_owner(db, sock)
    assert (setting, mode) == ("0770", "0770"), \
        f"unix_socket_permissions = {setting}, {sock} is mode {mode}: expected 0770 (CIS 2.6)"


def test_cis_4_3_superusers(db: Target) -> None:
    """CIS 4.3: superusers are postgres, and bgdb_admin only while postgres_admin_cidrs is set"""
    supers = [r[0] for r in db.sql("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1")]
    allowed = {"postgres", *(["bgdb_admin"] if db.pg.admin_cidrs else [])}
    extra = sorted(set(supers) - allowed)
    assert not extra, f"superusers {extra} beyond {sorted(allowed)} " \
        "(bgdb_admin exists only while postgres_admin_cidrs is set) (CIS 4.3)"


def test_cis_4_10_public_privileges(db: Target) -> None:
    """CIS 4.10: PUBLIC cannot connect to the app database nor create in any public schema"""
    app = db.app.database
    got = db.value(f"SELECT concat_ws(',', CASE WHEN has_database_privilege('public', "
                   f"'{app}', 'CONNECT') THEN 'CONNECT' END, CASE WHEN has_database_privilege("
                   f"'public', '{app}', 'TEMPORARY') THEN 'TEMPORARY' END)")
    assert not got, f"PUBLIC has {got} on database {app} (CIS 4.10)"
    for database in ("postgres", "template1", app):
        create = db.value("SELECT has_schema_privilege('public', 'public', 'CREATE')", database)
        assert create == "f", f"PUBLIC may create objects in schema public of {database} " \
            "(CIS 4.10)"


def test_cis_5_5_superuser_connection_limit(db: Target) -> None:
    """CIS 5.5: the postgres role has a connection limit"""
    got = db.value("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'postgres'")
    want = db.pg.superuser_connection_limit
    assert got == str(want), f"postgres role's connection limit is {got}, expected {want} " \
        "(-1 = unlimited) (CIS 5.5)"


def test_cis_5_6_password_policy(db: Target) -> None:
    """CIS 5.6: a weak plaintext password is refused (passwordcheck)"""
    libs = db.setting("shared_preload_libraries")
    assert "passwordcheck" in libs.split(","), \
        f"passwordcheck is not in shared_preload_libraries ('{libs}') (CIS 5.6)"
    if db.value("SELECT pg_is_in_recovery()", "postgres") == "t":
        return  # a standby runs no CREATE ROLE; the primary (leader) shows the refusal
    role = "bgdb_password_probe"
    cmd = (f"cd / && runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -p {db.pg.port} "
           f"-c 'BEGIN' -c 'CREATE ROLE {role}' -c \"ALTER ROLE {role} PASSWORD 'abc'\" "
           "-c 'ROLLBACK'")
    out = db.host.run(cmd)
    assert out.rc != 0 and "password is too short" in out.stderr, \
        f"ALTER ROLE ... PASSWORD 'abc' was not refused: {out.stderr.strip()} (CIS 5.6)"


def test_cis_5_7_auth_delay(db: Target) -> None:
    """CIS 5.7: auth_delay slows every failed login"""
    libs = db.setting("shared_preload_libraries")
    assert "auth_delay" in libs.split(","), \
        f"auth_delay is not in shared_preload_libraries ('{libs}') (CIS 5.7)"
    got = db.value("SELECT setting FROM pg_settings WHERE name = 'auth_delay.milliseconds'")
    assert got == str(db.pg.auth_delay_ms) and got != "0", \
        f"auth_delay.milliseconds = {got}, expected {db.pg.auth_delay_ms} (CIS 5.7)"


def test_cis_4_8_set_user(db: Target) -> None:
    """CIS 4.8: superuser escalation goes through set_user (preloaded, logged), granted to no one"""
    if db.pg.version not in SET_USER_MAJORS:
        pytest.skip(f"not available: {SET_USER_MISSING} (CIS 4.8)")
    libs = db.setting("shared_preload_libraries")
    assert "set_user" in libs.split(","), \
        f"set_user is not in shared_preload_libraries ('{libs}') (CIS 4.8)"
    app = db.app.database
    installed = db.value("SELECT extversion FROM pg_extension WHERE extname = 'set_user'", app)
    assert installed, f"extension set_user is not installed in database {app} (CIS 4.8)"
    public = db.value("SELECT string_agg(p.oid::regprocedure::text, ', ') FROM pg_proc p "
                      "WHERE p.proname IN ('set_user', 'set_user_u') "
                      "AND has_function_privilege('public', p.oid, 'EXECUTE')", app)
    assert not public, f"PUBLIC may execute {public}: anyone may escalate (CIS 4.8)"


FORWARD_SECRET = ("ECDHE", "DHE", "!")


def test_cis_6_8_tls_protocol_and_ciphers(db: Target) -> None:
    """CIS 6.8: TLS 1.3 minimum (or 1.2 with forward-secret ciphers only)"""
    minimum = db.setting("ssl_min_protocol_version")
    ciphers = db.setting("ssl_ciphers")
    assert minimum in ("TLSv1.2", "TLSv1.3"), f"ssl_min_protocol_version = {minimum} (CIS 6.8)"
    weak = [c for c in ciphers.split(":") if not c.startswith(FORWARD_SECRET)]
    assert not weak, f"ssl_ciphers allows {weak}: key exchange without forward secrecy " \
        f"(ssl_min_protocol_version = {minimum}) (CIS 6.8)"


def test_pgbouncer_log_not_world_readable(db: Target) -> None:
    """pgbouncer.log is not readable by every local user"""
    path = "/var/log/postgresql/pgbouncer.log"
    if not db.host.file(path).exists:
        pytest.skip(f"{path} does not exist (PgBouncer logs to the journal)")
    mode, _ = _mode_owner(db, path)
    assert int(mode, 8) & 0o027 == 0, f"{path} is mode {mode}, expected 0640 or stricter"


# The monitor role's payload-free path (sql/monitor_views.sql): no payload column readable, no
# other session's query text (not in pg_monitor/pg_read_all_stats; its functions return none).
PAYLOAD_COLUMNS = """
SELECT string_agg(format('%s.%s', c.relname, a.attname), ', ' ORDER BY c.relname, a.attnum)
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
  AND NOT c.relispartition
  AND (a.atttypid IN ('json'::regtype, 'jsonb'::regtype, 'bytea'::regtype)
       OR a.attname IN ('prompt', 'response', 'content', 'message'))
  AND has_column_privilege('bg_agents_monitor', c.oid, a.attnum, 'SELECT')"""
QUERY_TEXT = """
SELECT concat_ws(', ',
    CASE WHEN pg_has_role('bg_agents_monitor', 'pg_read_all_stats', 'USAGE')
         THEN 'pg_read_all_stats (every session''s query text)' END,
    (SELECT string_agg(p.oid::regprocedure::text || ' returns query', ', ')
     FROM pg_proc p
     WHERE 'query' = ANY (p.proargnames)
       AND has_function_privilege('bg_agents_monitor', p.oid, 'EXECUTE')
       AND p.prosecdef))"""


def test_monitor_role_reads_no_payload(db: Target) -> None:
    """The monitor role (exporter) reads no payload column and no other session's query text"""
    app = db.app.database
    readable = db.value(PAYLOAD_COLUMNS, app)
    texts = db.value(QUERY_TEXT, app)
    # Query texts first: the report keeps the first 300 characters of a message.
    problems = [*([f"query texts: {texts}"] if texts else []),
                *([f"payload columns: {readable}"] if readable else [])]
    assert not problems, f"bg_agents_monitor can read {'; '.join(problems)}"
