"""The security section of `bgdb check` on the session's deployed lab: all green on a fresh
deploy; every control, broken at once on the primary, fails with its own message; restored, green
again. One break and one check run for all controls keeps the CI time small."""

from __future__ import annotations

from pathlib import Path

from checks.cis import NOT_APPLICABLE
from tests.integration.checks.test_readiness_checks import (
    DATA,
    RESTART,
    Breakage,
    on_primary,
    run_checks,
    sql,
)
from tests.sandbox_fixtures import Deployed

SECTION = "test_cis_ or test_pgbouncer_log or test_monitor_role"

PROFILE = "/var/lib/postgresql/.profile"
PGBOUNCER_LOG = "/var/log/postgresql/pgbouncer.log"
AUTO_CONF = f"{DATA}/postgresql.auto.conf"

# Settings broken with ALTER SYSTEM take effect with one restart (logging_collector, the socket
# and the preload libraries need it). Each message names its CIS control.
SETTING_BREAKS = [
    Breakage("test_cis_3_1_3_logging_collector", "ALTER SYSTEM SET log_file_mode = '0644'",
             "ALTER SYSTEM RESET log_file_mode", "log_file_mode = 0644, expected 0600 (CIS 3.1.5)"),
    Breakage("test_cis_3_1_22_log_error_verbosity",
             "ALTER SYSTEM SET log_error_verbosity = 'default'",
             "ALTER SYSTEM RESET log_error_verbosity",
             "log_error_verbosity = default, expected verbose (CIS 3.1.22)"),
    Breakage("test_cis_7_2_log_replication_commands",
             "ALTER SYSTEM SET log_replication_commands = off",
             "ALTER SYSTEM RESET log_replication_commands",
             "log_replication_commands = off: replication commands unlogged (CIS 7.2)"),
    Breakage("test_cis_2_6_socket_permissions",
             "ALTER SYSTEM SET unix_socket_permissions = '0777'",
             "ALTER SYSTEM RESET unix_socket_permissions",
             "unix_socket_permissions = 0777, /var/run/postgresql/.s.PGSQL.5432 is mode 0777"),
    # Both contrib modules out of the preload list: 5.6 and 5.7 fail each with its own line.
    Breakage("test_cis_5_6_password_policy",
             "ALTER SYSTEM SET shared_preload_libraries = pg_stat_statements, pgaudit",
             "ALTER SYSTEM RESET shared_preload_libraries",
             "passwordcheck is not in shared_preload_libraries"),
    Breakage("test_cis_6_8_tls_protocol_and_ciphers", "ALTER SYSTEM SET ssl_ciphers = 'HIGH'",
             "ALTER SYSTEM RESET ssl_ciphers",
             "ssl_ciphers allows ['HIGH']: key exchange without forward secrecy"),
    Breakage("test_cis_4_3_superusers", "CREATE ROLE bgdb_rogue SUPERUSER",
             "DROP ROLE IF EXISTS bgdb_rogue", "superusers ['bgdb_rogue'] beyond"),
    Breakage("test_cis_4_10_public_privileges", "GRANT CREATE ON SCHEMA public TO PUBLIC",
             "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
             "PUBLIC may create objects in schema public of postgres (CIS 4.10)"),
    Breakage("test_cis_5_5_superuser_connection_limit",
             "ALTER ROLE postgres CONNECTION LIMIT -1", "ALTER ROLE postgres CONNECTION LIMIT 10",
             "postgres role's connection limit is -1, expected 10"),
    Breakage("test_monitor_role_reads_no_payload",
             "GRANT bg_agents_readonly, pg_monitor TO bg_agents_monitor",
             "REVOKE bg_agents_readonly, pg_monitor FROM bg_agents_monitor",
             "payload columns: agent_communications."),
]
FILE_BREAKS = [
    Breakage("test_cis_2_1_postgres_umask", f"sed -i 's/^umask 0077$/umask 0022/' {PROFILE}",
             f"sed -i 's/^umask 0022$/umask 0077/' {PROFILE}",
             "postgres user's umask is 0022, expected 0077"),
    Breakage("test_pgbouncer_log_not_world_readable", f"chmod 0644 {PGBOUNCER_LOG}",
             f"chmod 0640 {PGBOUNCER_LOG}", f"{PGBOUNCER_LOG} is mode 0644"),
]
# Broken by the preload line above, with its own message (set_user where Debian packages it).
ALSO_FAILING = {"test_cis_5_7_auth_delay": "auth_delay is not in shared_preload_libraries",
                "test_cis_4_8_set_user": "set_user is not in shared_preload_libraries"}
# The monitor's break above: both halves named in its one line.
ALSO_SAYING = "bg_agents_monitor can read query texts: pg_read_all_stats (every session's"
BREAKAGES = SETTING_BREAKS + FILE_BREAKS


def failed_rows(report: str) -> list[str]:
    return [line for line in report.splitlines() if "| FAILED |" in line]


def test_security_section_green_then_each_control_fails(deployed: Deployed,
                                                        tmp_path: Path) -> None:
    out = run_checks(deployed, tmp_path, SECTION)
    report = (tmp_path / "readiness.md").read_text()
    assert out.returncode == 0 and "FAILED" not in report, report
    assert report.count("| PASSED |") >= len(BREAKAGES) + len(ALSO_FAILING), report
    section = report.split("## Security (CIS PostgreSQL Benchmark)")[-1]
    assert "| PASSED |" in section and all(f"| {name} | {why} |" in section
                                           for name, why in NOT_APPLICABLE), report
    breaks = " && ".join([sql(b.breaks, "postgres") for b in SETTING_BREAKS]
                         + [b.breaks for b in FILE_BREAKS] + [RESTART])
    # ALTER SYSTEM lines are taken out of the file, which works with the server down too.
    altered = "\\|".join(b.breaks.split()[3] for b in SETTING_BREAKS
                          if b.breaks.startswith("ALTER SYSTEM"))
    restores = " ; ".join([f"sed -i '/^\\({altered}\\) = /d' {AUTO_CONF}", RESTART]
                          + [sql(b.restores, "postgres") for b in SETTING_BREAKS
                             if not b.restores.startswith("ALTER SYSTEM")]
                          + [b.restores for b in FILE_BREAKS])
    on_primary(deployed, breaks)
    try:
        out = run_checks(deployed, tmp_path, SECTION)
        report = (tmp_path / "readiness.md").read_text()
        assert out.returncode == 1, report
        failed = failed_rows(report)
        wanted = {b.check: b.message for b in BREAKAGES} | ALSO_FAILING
        for check, message in wanted.items():
            assert any(message in row for row in failed), \
                f"{check}: no FAILED row saying {message!r} in:\n{report}"
        assert any(ALSO_SAYING in row for row in failed), report
        assert len(failed) == len(wanted), report
    finally:
        on_primary(deployed, restores)
    out = run_checks(deployed, tmp_path, SECTION)
    assert out.returncode == 0, (tmp_path / "readiness.md").read_text()
