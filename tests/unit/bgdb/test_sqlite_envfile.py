"""The agents' environment file (written by bgdb-setup-postgresql), where the migration finds its
target (--target postgresql), and the progress line."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import psycopg
import pytest

from bgdb.sqlite_migration import envfile, setup, target
from bgdb.sqlite_migration.progress import Progress


def test_render_replaces_postgresql_keys_and_keeps_the_rest() -> None:
    existing = ("# agents\nexport OPENAI_KEY=abc\nPOSTGRESQL_HOST=old\nPOSTGRESQL_OBSOLETE=1\n"
                "LOG_LEVEL=debug\n")
    text = envfile.render({"POSTGRESQL_HOST": "db1", "POSTGRESQL_PASSWORD": "p w$"}, existing)
    assert text == ("# agents\nexport OPENAI_KEY=abc\nPOSTGRESQL_HOST=db1\nLOG_LEVEL=debug\n"
                    "POSTGRESQL_PASSWORD='p w$'\n")
    assert envfile.parse(text) == {"OPENAI_KEY": "abc", "POSTGRESQL_HOST": "db1",
                                   "LOG_LEVEL": "debug", "POSTGRESQL_PASSWORD": "p w$"}


def test_parse_quotes_comments_and_export() -> None:
    assert envfile.parse('A="x \\"y\\""\nexport B=2 # two\n# C=3\nD=\'e f\'\nbad line\n') == {
        "A": 'x "y"', "B": "2", "D": "e f"}


def test_values_that_cannot_be_written_portably_are_refused() -> None:
    with pytest.raises(envfile.EnvFileError, match="POSTGRESQL_PASSWORD: a value with a single"):
        envfile.render({"POSTGRESQL_PASSWORD": "it's"})


def test_write_private_is_0600_even_with_a_lax_umask(tmp_path: Path) -> None:
    import os
    old = os.umask(0)
    try:
        path = tmp_path / "agents" / "postgresql.env"
        envfile.write_private(path, "A=1\n")
        envfile.write_private(path, "A=2\n")
    finally:
        os.umask(old)
    assert path.read_text() == "A=2\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["postgresql.env"]


def test_target_postgresql_reads_env_file_then_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "postgresql.env"
    env.write_text("POSTGRESQL_HOST=db1\nPOSTGRESQL_PORT=6432\nPOSTGRESQL_USER=agents\n"
                   "POSTGRESQL_PASSWORD=s3cret\nPOSTGRESQL_SSL_MODE=verify-full\n"
                   "POSTGRESQL_SSL_ROOT_CERT=/etc/bgdb/ca.crt\nPOSTGRESQL_TIMEOUT=30\n"
                   "POSTGRESQL_POOL_SIZE=10\n")
    values = target.env_settings(env, {"POSTGRESQL_PORT": "5432"})
    params = psycopg.conninfo.conninfo_to_dict(target.dsn_from_settings(values))
    assert params == {"host": "db1", "port": "5432", "user": "agents", "password": "s3cret",
                      "sslmode": "verify-full", "sslrootcert": "/etc/bgdb/ca.crt",
                      "connect_timeout": "30"}
    assert target.describe_dsn(target.dsn_from_settings(values)) == "agents@db1:5432/"
    monkeypatch.delenv("POSTGRESQL_HOST", raising=False)
    with pytest.raises(target.TargetError, match="POSTGRESQL_HOST is not set"):
        target.resolve_target("postgresql", None)
    assert "host=db1" in target.resolve_target("postgresql", env)
    assert target.resolve_target("host=x dbname=y") == "host=x dbname=y"


def _args(tmp_path: Path, **kw: object) -> argparse.Namespace:
    ns = setup._parser().parse_args([])
    ns.env_file = tmp_path / "postgresql.env"
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_setup_settings_precedence(tmp_path: Path) -> None:
    (tmp_path / "postgresql.env").write_text("POSTGRESQL_HOST=fromfile\nPOSTGRESQL_PORT=1111\n"
                                             "POSTGRESQL_PASSWORD=filepw\n")
    values = setup.settings(_args(tmp_path, port=2222),
                            {"POSTGRESQL_PORT": "3333", "POSTGRESQL_USER": "envuser",
                             "BGDB_SECRETS_DIR": str(tmp_path / "nosecrets")})
    assert values == {"POSTGRESQL_HOST": "fromfile", "POSTGRESQL_PORT": "2222",
                      "POSTGRESQL_DATABASE": "background_agents", "POSTGRESQL_USER": "envuser",
                      "POSTGRESQL_PASSWORD": "filepw", "POSTGRESQL_SSL_MODE": "verify-full",
                      "POSTGRESQL_POOL_SIZE": "10", "POSTGRESQL_TIMEOUT": "30"}


def test_setup_takes_the_bundles_generated_password_and_ca(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "passwords").mkdir(parents=True)
    (secrets / "passwords" / "bg_agents_user").write_text("generated\n")
    (secrets / "ca").mkdir()
    (secrets / "ca" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    values = setup.settings(_args(tmp_path, host="db1"), {"BGDB_SECRETS_DIR": str(secrets)})
    assert values["POSTGRESQL_PASSWORD"] == "generated"
    assert values["POSTGRESQL_SSL_ROOT_CERT"] == str((secrets / "ca" / "ca.crt").resolve())


@pytest.mark.parametrize(("kw", "message"), [
    ({}, "no host: pass --host or set POSTGRESQL_HOST"),
    ({"host": "h", "timeout": 0}, "POSTGRESQL_TIMEOUT = '0': expected a positive integer"),
])
def test_setup_settings_errors(tmp_path: Path, kw: dict[str, object], message: str) -> None:
    with pytest.raises(setup.SetupError, match=message):
        setup.settings(_args(tmp_path, **kw), {"BGDB_SECRETS_DIR": str(tmp_path)})


def test_progress_line_like_tqdm() -> None:
    out = io.StringIO()
    bar = Progress("agent_heartbeats", 1000, stream=out)
    bar.update(250)
    bar.close()
    line = out.getvalue().strip()
    assert line.startswith("agent_heartbeats  25% |######------------------| 250/1000 [")
    assert line.endswith(" rows/s]")
    quiet = io.StringIO()
    bar = Progress("x", 10, stream=quiet, enabled=False)
    bar.update(10)
    bar.close()
    assert quiet.getvalue() == ""
