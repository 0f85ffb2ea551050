"""The readiness checks against a freshly deployed lab: all pass; and each one fails, with a
message saying what is wrong, when the thing it guards is broken (then it is restored)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sandbox_fixtures import Deployed

REPO = Path(__file__).resolve().parents[3]
DATA = "/var/lib/postgresql/15/main"
HBA = "/etc/postgresql/15/main/pg_hba.conf"
APT_OFF = "/etc/apt/apt.conf.d/99zz-test-no-upgrades"


def run_checks(deployed: Deployed, tmp_path: Path,
               *select: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "checks",
           f"--readiness-report={tmp_path / 'readiness.md'}",
           f"--junitxml={tmp_path / 'readiness.xml'}"]
    if select:
        cmd += ["-k", " or ".join(select)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **deployed.env})


def on_primary(deployed: Deployed, script: str) -> None:
    out = subprocess.run(["ssh", "-F", str(deployed.ssh_config()), deployed.primary.address,
                          script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{script}: {out.stderr}"


def sql(statement: str, db: str = "background_agents") -> str:
    return f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {db} -c \"{statement}\""


GIN_ON_CONFIG = ("indrelid = 'agents'::regclass AND indkey[0] = (SELECT attnum FROM pg_attribute "
                 "WHERE attrelid = 'agents'::regclass AND attname = 'config')")
RELOAD = sql("SELECT pg_reload_conf()") + " && sleep 0.5"
RESTART = "systemctl restart postgresql@15-main"


@dataclass(frozen=True)
class Breakage:
    check: str
    breaks: str
    restores: str
    message: str


BREAKAGES = [
    Breakage("test_postgresql_running", "systemctl stop postgresql@15-main",
             "systemctl start postgresql@15-main", "is not running"),
    Breakage("test_ssl_on_and_enforced", sql("ALTER SYSTEM SET ssl = off") + " && " + RELOAD,
             sql("ALTER SYSTEM RESET ssl") + " && " + RELOAD, "ssl is off"),
    # The restore removes exactly the appended line: the bundle's own pg_hba has
    # `hostnossl all all 0.0.0.0/0 reject`, which must stay.
    Breakage("test_no_public_access",
             f"echo 'hostssl all all 0.0.0.0/0 scram-sha-256' >> {HBA}",
             f"sed -i '/^hostssl all all 0\\.0\\.0\\.0\\/0 scram-sha-256$/d' {HBA}",
             "the database is open to the Internet"),
    Breakage("test_pg_hba_strict", f"echo 'host all all 10.231.0.99/32 trust' >> {HBA}",
             f"sed -i '/10.231.0.99/d' {HBA}", "weak or broken pg_hba lines"),
    Breakage("test_password_encryption",
             sql("ALTER SYSTEM SET password_encryption = md5") + " && " + RELOAD,
             sql("ALTER SYSTEM RESET password_encryption") + " && " + RELOAD,
             "password_encryption = md5"),
    Breakage("test_listen_addresses", sql("ALTER SYSTEM SET listen_addresses = '*'") +
             f" && {RESTART}", sql("ALTER SYSTEM RESET listen_addresses") + f" && {RESTART}",
             "listen_addresses = '*'"),
    Breakage("test_data_directory_protected", f"chmod 0750 {DATA}", f"chmod 0700 {DATA}",
             "expected 0700 postgres"),
    Breakage("test_audit_logging", sql("ALTER SYSTEM SET log_connections = off") + " && " + RELOAD,
             sql("ALTER SYSTEM RESET log_connections") + " && " + RELOAD,
             "log_connections is off"),
    # ALTER SYSTEM knows pgaudit.log only because pgaudit is loaded.
    Breakage("test_pgaudit_loaded", sql("ALTER SYSTEM SET pgaudit.log = 'none'") + " && " + RELOAD,
             sql("ALTER SYSTEM RESET pgaudit.log") + " && " + RELOAD,
             "pgaudit.log = 'none': ddl, role statements are not audited"),
    Breakage("test_pgaudit_writes_audit_lines",
             sql("ALTER SYSTEM SET pgaudit.log = 'none'") + " && " + RELOAD,
             sql("ALTER SYSTEM RESET pgaudit.log") + " && " + RELOAD,
             "no AUDIT line for CREATE ROLE and CREATE TABLE bgdb_audit_probe_"),
    Breakage("test_pg_stat_statements", sql("DROP EXTENSION pg_stat_statements"),
             sql("CREATE EXTENSION pg_stat_statements"), "extension pg_stat_statements missing"),
    Breakage("test_sizing_matches_host", sql("ALTER SYSTEM SET work_mem = '1MB'") + " && " +
             RELOAD, sql("ALTER SYSTEM RESET work_mem") + " && " + RELOAD,
             "sizing differs from the tuning formulas: work_mem=1024kB"),
    Breakage("test_firewall_active", "nft delete table inet bgdb",
             "systemctl restart bgdb-firewall", "table inet bgdb is missing"),
    Breakage("test_kernel_settings", "mv /etc/sysctl.d/60-bgdb-postgresql.conf /root/",
             "mv /root/60-bgdb-postgresql.conf /etc/sysctl.d/",
             "60-bgdb-postgresql.conf is missing"),
    # Another apt file, read after the bundle's, turns the daily run off.
    Breakage("test_unattended_upgrades_configured",
             f"echo 'APT::Periodic::Unattended-Upgrade \"0\";' > {APT_OFF}", f"rm {APT_OFF}",
             "APT::Periodic::Unattended-Upgrade is '0': apt's daily job skips it"),
    Breakage("test_apt_timers_active", "systemctl disable --now apt-daily-upgrade.timer",
             "systemctl enable --now apt-daily-upgrade.timer",
             "apt-daily-upgrade.timer is disabled: unattended-upgrade never runs"),
    Breakage("test_schema_migrations_current",
             sql("UPDATE schema_migrations SET checksum = 'x' || checksum WHERE version = 1"),
             sql("UPDATE schema_migrations SET checksum = substr(checksum, 2) WHERE version = 1"),
             "applied migrations whose file changed since: [1]"),
    Breakage("test_app_role_least_privilege",
             sql("GRANT CREATE ON SCHEMA public TO bg_agents_user"),
             sql("REVOKE CREATE ON SCHEMA public FROM bg_agents_user"),
             "bg_agents_user can: CREATE on schema public"),
    Breakage("test_public_schema_not_writable", sql("GRANT CREATE ON SCHEMA public TO PUBLIC"),
             sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
             "PUBLIC can CREATE in schema public"),
    Breakage("test_foreign_keys_indexed",
             sql("CREATE TABLE fk_probe (agent text REFERENCES agents (agent_id))"),
             sql("DROP TABLE fk_probe"), "foreign keys without an index: [['fk_probe', 'agent']]"),
    Breakage("test_no_invalid_indexes",
             sql("CREATE TABLE inv_probe (x int); INSERT INTO inv_probe VALUES (1), (1)") + "; " +
             sql("CREATE UNIQUE INDEX CONCURRENTLY inv_probe_x ON inv_probe (x)") + " || true",
             sql("DROP TABLE inv_probe"), "invalid indexes: [['inv_probe_x']]"),
    Breakage("test_searched_jsonb_has_gin",
             sql(f"SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE {GIN_ON_CONFIG}") +
             " > /tmp/gin.sql && " + sql(
                 "DO \\$\\$ BEGIN EXECUTE (SELECT format('DROP INDEX %s', indexrelid::regclass) "
                 f"FROM pg_index WHERE {GIN_ON_CONFIG}); END \\$\\$"),
             "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d background_agents "
             "-f /tmp/gin.sql", "JSONB columns without a GIN index: ['agents.config']"),
    Breakage("test_seed_schema",
             sql("ALTER TABLE help_requests RENAME COLUMN content TO body; "
                 "ALTER TABLE system_state ALTER COLUMN value SET NOT NULL"),
             sql("ALTER TABLE help_requests RENAME COLUMN body TO content; "
                 "ALTER TABLE system_state ALTER COLUMN value DROP NOT NULL"),
             "not the seed's schema: system_state.value: NOT NULL (the seed allows NULL); "
             "help_requests.content: missing"),
]


def test_every_check_passes_on_a_fresh_deploy(deployed: Deployed, tmp_path: Path) -> None:
    # A fresh deploy has no load test and no restore drill yet: those evidence checks fail
    # until there are (test_readiness_breaks_ops.py runs them both ways).
    out = run_checks(deployed, tmp_path, "not test_load_tested and not test_restore_tested")
    assert out.returncode == 0, out.stdout[-4000:]
    report = (tmp_path / "readiness.md").read_text()
    assert "# Production readiness: PASS" in report
    assert "FAILED" not in report and report.count("| PASSED |") >= len(BREAKAGES)
    assert (tmp_path / "readiness.xml").read_text().count("<testcase") >= len(BREAKAGES)


@pytest.mark.parametrize("case", BREAKAGES, ids=[b.check for b in BREAKAGES])
def test_check_fails_when_broken(deployed: Deployed, tmp_path: Path, case: Breakage) -> None:
    on_primary(deployed, case.breaks)
    try:
        out = run_checks(deployed, tmp_path, case.check)
        assert out.returncode == 1, f"{case.check} passed on a broken host:\n{out.stdout[-2000:]}"
        report = (tmp_path / "readiness.md").read_text()
        assert case.message in report, f"message not in the report:\n{report}"
    finally:
        on_primary(deployed, case.restores)
    again = run_checks(deployed, tmp_path, case.check)
    assert again.returncode == 0, f"not restored:\n{again.stdout[-2000:]}"
