"""The security section of `bgdb check` on the session's deployed lab: all green on a fresh
deploy; every control, broken at once on the primary, fails with its own message; restored, green
again. One break and one check run for all controls keeps the CI time small."""

from __future__ import annotations

from pathlib import Path

from tests.integration.checks.test_readiness_checks import (
    RESTART,
    Breakage,
    on_primary,
    run_checks,
    sql,
)
from tests.sandbox_fixtures import Deployed

SECTION = "test_cis_"

# Settings broken with ALTER SYSTEM take effect with one restart (logging_collector needs it).
SETTING_BREAKS = [
    Breakage("test_cis_3_1_3_logging_collector", "ALTER SYSTEM SET log_file_mode = '0644'",
             "ALTER SYSTEM RESET log_file_mode", "log_file_mode = 0644, expected 0600"),
    Breakage("test_cis_3_1_22_log_error_verbosity",
             "ALTER SYSTEM SET log_error_verbosity = 'default'",
             "ALTER SYSTEM RESET log_error_verbosity", "log_error_verbosity = default"),
    Breakage("test_cis_7_2_log_replication_commands",
             "ALTER SYSTEM SET log_replication_commands = off",
             "ALTER SYSTEM RESET log_replication_commands", "log_replication_commands = off"),
]
FILE_BREAKS: list[Breakage] = []
BREAKAGES = SETTING_BREAKS + FILE_BREAKS


def test_security_section_green_then_each_control_fails(deployed: Deployed,
                                                        tmp_path: Path) -> None:
    out = run_checks(deployed, tmp_path, SECTION)
    report = (tmp_path / "readiness.md").read_text()
    assert out.returncode == 0 and "FAILED" not in report, report
    assert report.count("| PASSED |") >= len(BREAKAGES), report
    breaks = " && ".join([sql(b.breaks, "postgres") for b in SETTING_BREAKS]
                         + [b.breaks for b in FILE_BREAKS] + [RESTART])
    restores = " ; ".join([sql(b.restores, "postgres") for b in SETTING_BREAKS]
                          + [b.restores for b in FILE_BREAKS] + [RESTART])
    on_primary(deployed, breaks)
    try:
        out = run_checks(deployed, tmp_path, SECTION)
        report = (tmp_path / "readiness.md").read_text()
        assert out.returncode == 1, report
        for b in BREAKAGES:
            row = next((line for line in report.splitlines() if line.startswith("| ")
                        and b.check.removeprefix("test_").split("_")[1] in line), "")
            assert b.message in report, f"{b.check}: message {b.message!r} not in:\n{report}"
            assert row, f"{b.check}: no row in:\n{report}"
    finally:
        on_primary(deployed, restores)
    out = run_checks(deployed, tmp_path, SECTION)
    assert out.returncode == 0, (tmp_path / "readiness.md").read_text()
