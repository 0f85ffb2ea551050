"""The alert and recording rules pass `promtool check rules` and `promtool test rules` (the real
promtool of Debian's prometheus package), and every alert has a case that fires and one that
does not."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ALERTS = Path(__file__).resolve().parents[2] / "alerts"
RULES = sorted(ALERTS.glob("*.rules.yml"))
TESTS = sorted((ALERTS / "tests").glob("*.test.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    path = os.environ.get("BGDB_PROMTOOL") or shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(path).is_file():
        pytest.fail("promtool not found: install Debian's prometheus package (or set "
                    "BGDB_PROMTOOL)")
    return path


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_there_are_rules_and_tests() -> None:
    assert RULES, "no alerts/*.rules.yml"
    assert TESTS, "no alerts/tests/*.test.yml"


def test_check_rules(promtool: str) -> None:
    res = run([promtool, "check", "rules", *map(str, RULES)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_rule_unit_tests(promtool: str, test_file: Path) -> None:
    res = run([promtool, "test", "rules", str(test_file)])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout and "FAILED" not in res.stdout


def _alert_names() -> set[str]:
    names: set[str] = set()
    for path in RULES:
        names.update(re.findall(r"^\s*-\s*alert:\s*(\S+)\s*$", path.read_text(), re.MULTILINE))
    return names


def _cases() -> tuple[set[str], set[str]]:
    """Alert names with a firing case (non-empty exp_alerts) and with a silent one."""
    firing: set[str] = set()
    silent: set[str] = set()
    case = re.compile(r"alertname:\s*(\S+)\s*\n\s*exp_alerts:[ \t]*(\[\])?")
    for path in TESTS:
        for name, empty in case.findall(path.read_text()):
            (silent if empty else firing).add(name)
    return firing, silent


def test_every_alert_fires_and_stays_silent_in_some_case() -> None:
    names = _alert_names()
    assert len(names) >= 15
    firing, silent = _cases()
    assert names - firing == set(), "alerts without a firing case"
    assert names - silent == set(), "alerts without a not-firing case"
    assert (firing | silent) - names == set(), "test cases for alerts that do not exist"


def test_seed_thresholds_are_in_the_rules() -> None:
    text = "\n".join(p.read_text() for p in RULES)
    for expr in (
        "bgdb:pgbouncer_pool:utilization > 0.8",
        "bgdb:statement_latency_seconds:p95_5m > 0.1",
        "bgdb:pg_lock_wait_ratio:avg5m > 0.05",
        "bgdb_agent_missed_heartbeats > 2",
        "bgdb_operation_error_ratio > 0.05",
    ):
        assert expr in text
