"""The readiness report: one line per check and host (item, status, evidence), on the terminal and
as Markdown; JUnit XML comes from pytest's own --junitxml."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from checks.cis import NOT_APPLICABLE

SECURITY_MODULE = "checks/test_security.py"  # the security section (CIS PostgreSQL)


@dataclass
class Row:
    item: str
    host: str
    status: str
    evidence: str
    security: bool = False


class ReadinessReport:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: list[Row] = []
        self.path = Path(config.getoption("readiness_report"))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, Any, None]:
        # The check's docstring names the readiness item in the report.
        outcome = yield
        doc = (getattr(getattr(item, "function", None), "__doc__", "") or "").strip()
        outcome.get_result().item_doc = doc.splitlines()[0] if doc else ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
            return
        name = report.nodeid.split("::")[-1]
        check, _, host = name.partition("[")
        item = getattr(report, "item_doc", "") or check
        evidence = ""
        if report.failed:
            evidence = _first_line(report.longreprtext)
        elif report.skipped and isinstance(report.longrepr, tuple):
            evidence = str(report.longrepr[2])
        self.rows.append(Row(item, host.rstrip("]"), report.outcome.upper(), evidence,
                             report.nodeid.startswith(SECURITY_MODULE)))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        failed = sum(r.status == "FAILED" for r in self.rows)
        lines = [f"# Production readiness: {'FAIL' if failed else 'PASS'}", "",
                 f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}, {len(self.rows)} checks, "
                 f"{failed} failed", "", "| item | host | status | evidence |", "|---|---|---|---|"]
        for r in self.rows:
            if not r.security:
                lines.append(_md(r))
        security = [r for r in self.rows if r.security]
        if security:
            lines += ["", "## Security (CIS PostgreSQL Benchmark)", "",
                      "| item | host | status | evidence |", "|---|---|---|---|",
                      *(_md(r) for r in security),
                      "", "Left to the environment (not applicable to the bundle):", "",
                      "| control | why |", "|---|---|",
                      *(f"| {name} | {why} |" for name, why in NOT_APPLICABLE)]
        self.path.write_text("\n".join(lines) + "\n")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.rows:
            return
        tr = terminalreporter
        tr.section("production readiness")
        for r in self.rows:
            if not r.security:
                tr.write_line(_line(r))
        security = [r for r in self.rows if r.security]
        if security:
            tr.section("security (CIS PostgreSQL Benchmark)")
            for r in security:
                tr.write_line(_line(r))
            for name, why in NOT_APPLICABLE:
                tr.write_line(f"n/a  {'':14} {name}  -- operator's decision: {why}")
        tr.write_line(f"report: {self.path}")


def _md(r: Row) -> str:
    return f"| {r.item} | {r.host} | {r.status} | {r.evidence.replace('|', '/')} |"


def _line(r: Row) -> str:
    mark = {"PASSED": "ok  ", "FAILED": "FAIL", "SKIPPED": "skip"}.get(r.status, r.status)
    return f"{mark} {r.host:14} {r.item}" + (f"  -- {r.evidence}" if r.evidence else "")


def _first_line(text: str) -> str:
    """The assertion's own message (the line starting with 'E   '), else the last line."""
    for line in text.splitlines():
        if line.startswith("E   "):
            return line[4:].strip()[:300]
    return text.strip().splitlines()[-1][:300] if text.strip() else ""

