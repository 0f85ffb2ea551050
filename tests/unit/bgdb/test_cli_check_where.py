"""`bgdb check -k EXPR -- ARGS` reaches pytest; `bgdb where` names every URL and file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bgdb import cli
from deploy.hostdata import load_inventory


def test_check_takes_k_and_passes_what_follows_the_double_dash(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, argparse.Namespace] = {}

    def capture(args: argparse.Namespace) -> int:
        seen["args"] = args
        return 0

    monkeypatch.setattr(cli, "cmd_check", capture)

    def parsed(argv: list[str]) -> list[str]:
        """The pytest arguments `bgdb <argv>` runs the checks with."""
        assert cli.main(argv) == 0
        return cli.check_pytest_args(seen["args"])

    assert parsed(["check", "-k", "pgbouncer"]) == ["-k", "pgbouncer"]
    assert parsed(["check", "-k", "ssl or hba", "--", "-x", "--maxfail=2"]) == \
        ["-k", "ssl or hba", "-x", "--maxfail=2"]
    assert parsed(["check", "--", "-k", "sizing"]) == ["-k", "sizing"]
    assert parsed(["check"]) == []


@pytest.fixture
def two_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps({
        "ssh": {"user": "admin"},
        "hosts": [{"name": "db1", "address": "10.0.0.1", "groups": ["postgres_primary"],
                   "data": {"postgres_allowed_cidrs": ["10.0.0.0/24"]}},
                  {"name": "db2", "address": "10.0.0.2", "groups": ["postgres_replicas"],
                   "data": {"postgres_allowed_cidrs": ["10.0.0.0/24"],
                            "exporter_tls": True}}]}))
    monkeypatch.setenv("BGDB_HOSTS_FILE", str(path))
    monkeypatch.setenv("BGDB_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.delenv("BGDB_EXTRA_DATA", raising=False)
    return path


def test_where_names_pgcli_metrics_per_host_alert_rules_and_reports(two_hosts: Path) -> None:
    hosts = load_inventory()
    text = cli.where_text(hosts, hosts[0])
    assert 'pgcli "host=10.0.0.1 port=5432 dbname=background_agents user=bg_agents_user ' \
           'sslmode=verify-full' in text
    assert "http://10.0.0.1:9847/metrics" in text
    assert "https://10.0.0.2:9847/metrics" in text
    assert str(cli.REPO / "alerts" / "bgdb.rules.yml") in text
    assert str(cli.REPO / "reports" / "readiness.md") in text
    assert "load_evidence.json" in text
    assert "Sandbox" not in text  # real hosts: no sandbox hint
