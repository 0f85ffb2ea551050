from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from bgdb import loadtest
from deploy.hostdata import InventoryHost
from deploy.secrets import SecretError

PRIMARY = InventoryHost("db1", "10.231.0.10", ("postgres_primary",), {})


def test_targets_pgbouncer_over_tls_as_the_app_role_with_the_stored_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDB_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("POSTGRESQL_PASSWORD", raising=False)
    (tmp_path / "passwords").mkdir(mode=0o700)
    (tmp_path / "passwords" / "bg_agents_user").write_text("p w'\\x\n")
    params = conninfo_to_dict(loadtest.target_dsn(PRIMARY))
    assert params == {"host": "10.231.0.10", "port": "6432", "dbname": "background_agents",
                      "user": "bg_agents_user", "sslmode": "verify-full",
                      "sslrootcert": str(tmp_path / "ca" / "ca.crt"), "connect_timeout": "10",
                      "password": "p w'\\x"}


def test_a_missing_password_is_an_error_not_a_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDB_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("POSTGRESQL_PASSWORD", raising=False)
    with pytest.raises(SecretError, match="bg_agents_user"):
        loadtest.target_dsn(PRIMARY)
    assert not (tmp_path / "passwords" / "bg_agents_user").exists()


def test_the_benchmark_loads_from_its_file() -> None:
    assert callable(loadtest._bench().main)


def test_direct_and_pgbouncer_targets_of_one_database_are_cleaned_once() -> None:
    bench = loadtest._bench()
    direct = bench.Target("direct", "host=db1 hostaddr=10.0.1.10 port=5432 dbname=a")
    pooled = bench.Target("pgbouncer", "host=db1 hostaddr=10.0.1.10 port=6432 dbname=a")
    other = bench.Target("other", "host=db1 hostaddr=10.0.1.10 port=6432 dbname=b")
    assert bench.databases([direct, pooled, other]) == [direct, other]
