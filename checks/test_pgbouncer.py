"""PgBouncer items of the readiness list: running, pooling as configured, TLS enforced, auth with
no plaintext. Expectations come from the same settings the deploy used; runtime state is read
from PgBouncer's console (over its local socket, as the OS user it runs as) and from PostgreSQL.
"""

from __future__ import annotations

import shlex

from bgdb.remote import TAB, Target
from deploy import pgbouncer
from deploy.settings import Data, PgBouncerSettings, pgbouncer_settings


def _bouncer(db: Target) -> PgBouncerSettings:
    return pgbouncer_settings(Data(db.inv.data), db.app, db.pg)


def _console(db: Target, command: str) -> list[dict[str, str]]:
    """Rows of a SHOW command. PgBouncer lets its own OS user (postgres) on the console as the
    user `pgbouncer` over the local socket, without a password."""
    port = _bouncer(db).port
    out = db.host.run(f"runuser -u postgres -- psql -XAq -F {TAB} --pset footer=off "
                      f"-h /var/run/postgresql -p {port} -U pgbouncer -d pgbouncer "
                      f"-c {shlex.quote(command)}")
    assert out.rc == 0, f"PgBouncer's console does not answer {command}: {out.stderr.strip()}"
    lines = out.stdout.splitlines()
    names = lines[0].split("\t") if lines else []
    return [dict(zip(names, line.split("\t"), strict=False)) for line in lines[1:]]


def _config(db: Target) -> dict[str, str]:
    return {r["key"]: r["value"] for r in _console(db, "SHOW CONFIG")}


def _client(db: Target, address: str, sslmode: str, dbname: str | None = None) -> str:
    """What a client with no valid credentials is told when it connects to PgBouncer."""
    conninfo = (f"host={address} port={_bouncer(db).port} dbname={dbname or db.app.database} "
                f"user=bgdb_readiness_probe sslmode={sslmode} sslrootcert=/etc/bgdb/ca.crt "
                f"connect_timeout=5")
    out = db.host.run(f"cd /tmp && PGPASSWORD=not-a-password psql -XAtq {shlex.quote(conninfo)} "
                      f"-c 'SELECT 1'")
    assert out.rc != 0, f"{address}: a client without credentials got in: {out.stdout.strip()}"
    return out.stderr.strip()


def test_pgbouncer_running(db: Target) -> None:
    """PgBouncer is running and enabled"""
    svc = db.host.service("pgbouncer")
    assert svc.is_running, f"pgbouncer is not running:\n{db.journal('pgbouncer')}"
    assert svc.is_enabled, "pgbouncer does not start at boot (systemctl enable pgbouncer)"


def test_pgbouncer_listening(db: Target) -> None:
    """PgBouncer listens on the service address and localhost, not on every interface"""
    b = _bouncer(db)
    for address in pgbouncer.listen_addresses(b, db.inv.address):
        assert db.host.socket(f"tcp://{address}:{b.port}").is_listening, \
            f"pgbouncer is not listening on {address}:{b.port}"
    assert not db.host.socket(f"tcp://0.0.0.0:{b.port}").is_listening, \
        f"pgbouncer listens on every interface (0.0.0.0:{b.port})"


def test_pgbouncer_tls_enforced(db: Target) -> None:
    """PgBouncer refuses clients without TLS; verify-full works with the bundle's CA"""
    plain = _client(db, "127.0.0.1", "disable")
    assert "SSL required" in plain, \
        f"PgBouncer did not refuse a client without TLS (client_tls_sslmode not require?): {plain}"
    verified = _client(db, db.inv.address, "verify-full")
    assert "no such user" in verified or "authentication failed" in verified, \
        f"a verify-full TLS connection to {db.inv.address} failed before authentication: " \
        f"{verified}"
    assert _config(db).get("client_tls_sslmode") == "require", "client_tls_sslmode is not require"


def test_pgbouncer_pooling(db: Target) -> None:
    """PgBouncer pools the application database as configured, within max_connections"""
    b = _bouncer(db)
    config = _config(db)
    want = {"pool_mode": b.pool_mode, "default_pool_size": str(b.default_pool_size),
            "max_db_connections": str(b.max_db_connections),
            "reserve_pool_size": str(b.reserve_pool_size),
            "max_client_conn": str(b.max_client_conn),
            "query_wait_timeout": str(b.query_wait_timeout),
            "admin_users": ",".join(b.admin_users), "stats_users": ",".join(b.stats_users)}
    wrong = {k: config.get(k) for k, v in want.items() if config.get(k, "").replace(" ", "") != v}
    assert not wrong, f"PgBouncer runs with {wrong}; the deploy asked for " \
                      f"{ {k: want[k] for k in wrong} }"
    databases = {r["name"]: r for r in _console(db, "SHOW DATABASES")}
    assert db.app.database in databases, \
        f"PgBouncer has no pool for {db.app.database}: databases {sorted(databases)}"
    assert databases[db.app.database]["host"] == "/var/run/postgresql", \
        f"{db.app.database} is not routed over the local socket: {databases[db.app.database]}"
    over = [r for r in _console(db, "SHOW POOLS") if r["database"] == db.app.database and
            sum(int(r[k]) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
            > b.default_pool_size + b.reserve_pool_size]
    assert not over, f"pools with more server connections than pool + reserve: {over}"
    max_conn = int(db.setting("max_connections"))
    needed = b.server_connections + int(db.setting("superuser_reserved_connections"))
    assert needed <= max_conn, \
        f"all pools together can open {needed} connections, max_connections is {max_conn}"


def test_pgbouncer_auth_without_plaintext(db: Target) -> None:
    """PgBouncer authenticates with SCRAM via auth_query; its auth file holds verifiers only"""
    b = _bouncer(db)
    assert _config(db).get("auth_type") == "scram-sha-256", "PgBouncer's auth_type is not scram"
    f = db.host.file(pgbouncer.AUTH_FILE)
    assert f.exists, f"{pgbouncer.AUTH_FILE} is missing"
    assert (f.mode, f.user, f.group) == (0o640, "root", "postgres"), \
        f"{pgbouncer.AUTH_FILE} is {oct(f.mode)} {f.user}:{f.group}; expected 0640 root:postgres"
    entries = pgbouncer.parse_auth_file(f.content_string.splitlines())
    plaintext = [u for u, secret in entries.items() if not secret.startswith("SCRAM-SHA-256$")]
    assert not plaintext, f"{pgbouncer.AUTH_FILE} holds non-SCRAM secrets for {plaintext}"
    extra = set(entries) - {b.auth_user, *b.console_users}
    assert not extra, f"{pgbouncer.AUTH_FILE} lists roles it should not: {sorted(extra)}"
    fn = "to_regprocedure('pgbouncer.user_search(text)')"
    state = db.sql(f"SELECT p.prosecdef, has_function_privilege('public', p.oid, 'EXECUTE'), "
                   f"(SELECT rolsuper FROM pg_roles WHERE rolname = '{b.auth_user}') "
                   f"FROM pg_proc p WHERE p.oid = {fn}")
    assert state, f"the auth_query function pgbouncer.user_search is missing in {db.app.database}"
    assert state[0] == ["t", "f", "f"], \
        "pgbouncer.user_search must be SECURITY DEFINER, not executable by PUBLIC, and its " \
        f"caller {b.auth_user} no superuser (secdef, public, superuser): {state[0]}"
