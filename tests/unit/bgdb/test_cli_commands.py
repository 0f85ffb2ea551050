"""The operator commands without a database: host selection, DSN and password file, SQL file
handling, formatting, and bad input answered with one line and exit code 2."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bgdb import cli, connect, monitoring, patroni, tables, targets
from deploy.hostdata import InventoryHost


def inv(name: str, address: str, *groups: str) -> InventoryHost:
    return InventoryHost(name, address, groups, {"postgres_allowed_cidrs": ["10.0.0.0/24"]})


HOSTS = [inv("node", "10.0.0.9"), inv("db2", "10.0.0.2", "postgres_replicas"),
         inv("db1", "10.0.0.1", "postgres_primary")]


def test_select_defaults_to_every_db_host_primary_first_or_the_primary() -> None:
    assert [h.name for h in targets.select([], HOSTS)] == ["db1", "db2"]
    assert [h.name for h in targets.select([], HOSTS, default_primary=True)] == ["db1"]
    assert [h.name for h in targets.select(["10.0.0.2", "db2"], HOSTS)] == ["db2"]


def test_outside_ha_mode_no_leader_is_asked() -> None:
    # HA mode's default host is Patroni's leader; otherwise the inventory's primary, no SSH.
    assert patroni.leader_host(HOSTS) is None


def test_select_refuses_unknown_and_non_database_hosts() -> None:
    with pytest.raises(targets.OperatorError, match=r"unknown host 'node': database hosts are "
                                                    r"db1, db2"):
        targets.select(["node"], HOSTS)
    with pytest.raises(targets.OperatorError, match="no host in group postgres_primary"):
        targets.select([], HOSTS[:2], default_primary=True)


def test_json_wrapper_keeps_the_query_and_survives_a_trailing_comment() -> None:
    wrapped = monitoring.as_json_query("-- head\nSELECT 1 AS x;\n-- tail ;\n")
    assert wrapped.startswith("SELECT coalesce(json_agg(q), '[]'::json) FROM (\n-- head\n")
    assert wrapped.endswith("-- head\nSELECT 1 AS x\n) q")
    assert monitoring.as_json_query("SELECT 1 -- one\n").endswith("SELECT 1 -- one\n) q")
    assert monitoring.as_json_query("SELECT 1;;  ").endswith("SELECT 1\n) q")


def test_every_monitoring_file_the_commands_name_exists() -> None:
    names = ["server_info", "connection_states", "long_running_queries", "database_sizes",
             "replicas", "replica_lag", "system_health", "active_agents", "recent_heartbeats",
             "table_bloat", "largest_tables", monitoring.statements_file(150000),
             monitoring.statements_file(120000)]
    for name in names:
        assert monitoring.sql_file(name).strip(), name


@pytest.mark.parametrize(("version", "column"), [(120015, "mean_time"), (130000, "mean_exec_time"),
                                                 (170002, "mean_exec_time")])
def test_slow_statements_file_matches_the_server_version(version: int, column: str) -> None:
    sql = monitoring.sql_file(monitoring.statements_file(version))
    assert f"s.{column} AS mean_ms" in sql
    other = "mean_exec_time" if column == "mean_time" else "mean_time "
    assert f"s.{other}" not in sql


def test_parse_df() -> None:
    out = ("Filesystem     1-blocks      Used Available Capacity Mounted on\n"
           "/dev/vdb1    1000000000 900000000 100000000      90% /var/lib/postgresql\n")
    d = monitoring.parse_df("/var/lib/postgresql/15/main", out)
    assert (d.filesystem, d.mount, d.free_bytes, d.free_percent) == (
        "/dev/vdb1", "/var/lib/postgresql", 100000000, 10.0)
    with pytest.raises(ValueError):
        monitoring.parse_df("/x", "df: /x: No such file or directory\n")


def test_error_line_prefers_psql_error() -> None:
    err = "could not change directory\nERROR:  column s.mean_time does not exist\nLINE 5: ^\n"
    assert monitoring.last_line(err) == "ERROR:  column s.mean_time does not exist"
    assert monitoring.last_line("") == "(no output)"


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (0.04, "0.0s"), (59.94, "59.9s"),
                                               (61, "1m 01s"), (3600, "1h 00m"),
                                               (47 * 3600 + 59 * 60, "47h 59m"),
                                               (49 * 3600, "2d 01h"), (-3, "0.0s")])
def test_duration(seconds: float | None, text: str) -> None:
    assert tables.duration(seconds) == text


@pytest.mark.parametrize(("n", "text"), [(None, "-"), (512, "512 B"), (1536, "1.5 KiB"),
                                         (3 << 30, "3.0 GiB"), (5 << 50, "5120.0 TiB")])
def test_size(n: int | None, text: str) -> None:
    assert tables.size(n) == text


def test_text_is_one_line_and_cut() -> None:
    assert tables.text("SELECT *\n  FROM t", 80) == "SELECT * FROM t"
    assert tables.text("x" * 100, 10) == "x" * 9 + "…"


def test_endpoint_roles_and_ports() -> None:
    db1 = inv("db1", "10.0.0.1", "postgres_primary")
    ep = connect.endpoint(db1, "app", None)
    assert (ep.host, ep.port, ep.database, ep.user, ep.password_env) == (
        "10.0.0.1", 5432, "background_agents", "bg_agents_user", "POSTGRESQL_PASSWORD")
    assert connect.endpoint(db1, "readonly", "pgbouncer").port == 6432
    assert connect.endpoint(db1, "monitor", None).user == "bg_agents_monitor"
    dsn = ep.dsn(Path("/s/ca.crt"))
    assert "sslmode=verify-full sslrootcert=/s/ca.crt" in dsn and "password" not in dsn


def test_pgpass_file_is_private_escaped_and_removed(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    ep = connect.Endpoint("10.0.0.1", 5432, "db", "u", None)
    with connect.pgpass_file(ep, "p:w\\d") as path:
        assert path.read_text() == "10.0.0.1:5432:db:u:p\\:w\\\\d\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.is_relative_to(tmp_path)
    assert not path.exists() and not path.parent.exists()


# --- bad input: one line on stderr, exit code 2, no traceback ---------------------------------

@pytest.fixture
def hosts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Real-hosts mode with one primary on loopback port 1, where nothing listens."""
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps({
        "ssh": {"user": "root", "port": 1, "known_hosts": str(tmp_path / "known_hosts")},
        "hosts": [{"name": "db1", "address": "127.0.0.1", "groups": ["postgres_primary"],
                   "data": {"postgres_allowed_cidrs": ["127.0.0.1/32"]}}]}))
    (tmp_path / "known_hosts").write_text("")
    secrets_dir = tmp_path / "secrets"
    (secrets_dir / "ca").mkdir(parents=True)
    (secrets_dir / "ca" / "ca.crt").write_text("not used\n")
    monkeypatch.setenv("BGDB_HOSTS_FILE", str(path))
    monkeypatch.setenv("BGDB_SECRETS_DIR", str(secrets_dir))
    monkeypatch.delenv("POSTGRESQL_PASSWORD", raising=False)
    monkeypatch.delenv("BGDB_EXTRA_DATA", raising=False)
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_unknown_host_is_one_line(hosts_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status", "db9"], ["troubleshoot", "db9"], ["connect", "db9"],
                 ["maintenance", "run", "daily", "--host", "db9"]):
        assert one_line_error(capsys, argv) == \
            "bgdb: unknown host 'db9': database hosts are db1"


def test_unreachable_host_is_one_line(hosts_file: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["status"], ["troubleshoot", "--json"], ["maintenance", "run", "weekly"]):
        err = one_line_error(capsys, argv)
        assert err.startswith("bgdb: host db1 (127.0.0.1) is unreachable over SSH: "), err


def test_missing_secret_is_one_line(hosts_file: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, ["connect", "--role", "readonly"])
    assert err.startswith("bgdb: no password for bg_agents_readonly: set "), err
    assert "passwords/bg_agents_readonly" in err


def test_missing_ca_is_one_line(hosts_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (Path(str(hosts_file.parent)) / "secrets" / "ca" / "ca.crt").unlink()
    err = one_line_error(capsys, ["connect"])
    assert "CA certificate" in err and "is missing" in err


def test_unreachable_database_port_is_one_line(hosts_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pw = hosts_file.parent / "secrets" / "passwords"
    pw.mkdir(mode=0o700)
    (pw / "bg_agents_user").write_text("x\n")
    data = json.loads(hosts_file.read_text())
    data["hosts"][0]["data"]["postgres_port"] = 1  # nothing listens on loopback port 1
    hosts_file.write_text(json.dumps(data))
    err = one_line_error(capsys, ["connect"])
    assert err.startswith("bgdb: PostgreSQL on db1 (127.0.0.1:1) is unreachable: "), err
