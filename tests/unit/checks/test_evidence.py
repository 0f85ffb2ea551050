"""The evidence checks' logic, fed files: the load test evidence (missing, stale, another
database, each KPI missed) and the restore record (missing, failed, stale, empty)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checks.evidence import (
    Primary,
    kpi_shortfalls,
    load_evidence_problem,
    restore_record_problem,
    split_where,
)
from deploy.settings import Data, SettingsError, readiness_settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RS = readiness_settings(Data({}, env={}))
PRIMARY = Primary("db1", {"10.231.0.11", "db1"}, "background_agents")


def run(**changes: Any) -> dict[str, Any]:
    """One result row as bench/load_agents.py writes it, meeting the KPIs."""
    row = {"label": "tuned", "target": "pgbouncer", "where": "10.231.0.11:6432/background_agents",
           "agents": 200, "duration_s": 20.0, "operations": 24000, "tps": 1200.0,
           "p95_ms": 42.5, "errors": 0, "write_errors": 0,
           "measured_at": (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return row | changes


def evidence(tmp_path: Path, *rows: dict[str, Any]) -> Path:
    path = tmp_path / "load_evidence.json"
    path.write_text(json.dumps({"schema": 1, "results": list(rows)}))
    return path


def test_defaults_are_the_seed_kpis() -> None:
    assert (RS.load_evidence, RS.load_evidence_max_age_days, RS.load_min_ops_per_second,
            RS.load_max_p95_ms, RS.load_max_error_percent, RS.restore_drill_max_age_days) == \
        ("reports/load_evidence.json", 7, 1000, 100, 5, 30)


def test_settings_errors_name_key_and_value() -> None:
    with pytest.raises(SettingsError, match="readiness_load_evidence_max_age_days = 0"):
        readiness_settings(Data({"readiness_load_evidence_max_age_days": 0}, env={}))
    with pytest.raises(SettingsError, match="readiness_load_evidence = 3"):
        readiness_settings(Data({"readiness_load_evidence": 3}, env={}))


def test_split_where() -> None:
    assert split_where("10.231.0.11:6432/background_agents") == ("10.231.0.11", "background_agents")
    assert split_where("[::1]:5432/x") == ("::1", "x")


def test_a_fresh_run_meeting_the_kpis_passes(tmp_path: Path) -> None:
    assert load_evidence_problem(evidence(tmp_path, run()), PRIMARY, RS, NOW) is None


def test_one_good_run_is_enough(tmp_path: Path) -> None:
    path = evidence(tmp_path, run(agents=1000, p95_ms=2000.0), run())
    assert load_evidence_problem(path, PRIMARY, RS, NOW) is None


def test_missing_file(tmp_path: Path) -> None:
    problem = load_evidence_problem(tmp_path / "nope.json", PRIMARY, RS, NOW)
    assert problem == (f"no load test evidence: {tmp_path / 'nope.json'} is missing (run "
                       "bench/load_agents.py against db1's database background_agents; "
                       "readiness_load_evidence)")


def test_not_evidence(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{not json")
    assert f"{path} is not bench/load_agents.py evidence (JSONDecodeError" in \
        str(load_evidence_problem(path, PRIMARY, RS, NOW))


def test_stale(tmp_path: Path) -> None:
    path = evidence(tmp_path, run(measured_at="2026-11-16T12:00:00Z"))
    assert load_evidence_problem(path, PRIMARY, RS, NOW) == (
        "the last load test of db1's database background_agents is 10.0 days old "
        "(measured_at 2026-11-16 12:00 UTC); the limit is 7 days "
        f"(readiness_load_evidence_max_age_days; {path})")


def test_stale_limit_is_a_setting(tmp_path: Path) -> None:
    path = evidence(tmp_path, run(measured_at="2026-11-16T12:00:00Z"))
    rs = readiness_settings(Data({"readiness_load_evidence_max_age_days": 14}, env={}))
    assert load_evidence_problem(path, PRIMARY, rs, NOW) is None


def test_another_database(tmp_path: Path) -> None:
    path = evidence(tmp_path, run(where="10.231.0.99:6432/background_agents"),
                    run(where="10.231.0.11:6432/agents_bench"))
    assert load_evidence_problem(path, PRIMARY, RS, NOW) == (
        "no load test of db1's database background_agents (10.231.0.11, db1); the evidence's "
        "runs were against 10.231.0.11:6432/agents_bench, 10.231.0.99:6432/background_agents "
        f"({path})")


@pytest.mark.parametrize(("changes", "message"), [
    ({"p95_ms": 150.0}, "p95 150.0 ms (needs < 100 ms, readiness_load_max_p95_ms)"),
    ({"tps": 640.5}, "640.5 operations/s (needs >= 1,000, readiness_load_min_ops_per_second)"),
    ({"errors": 2000}, "error rate 7.7 % (2000 errors in 26000 operations; needs < 5 %, "
                       "readiness_load_max_error_percent)"),
    ({"p95_ms": None}, "p95 missing (needs < 100 ms, readiness_load_max_p95_ms)"),
])
def test_below_a_kpi(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    path = evidence(tmp_path, run(**changes))
    problem = load_evidence_problem(path, PRIMARY, RS, NOW)
    assert problem == (f"no recent load test of db1's database background_agents met the KPIs: "
                       f"{message} (best run: 10.231.0.11:6432/background_agents, 200 agents, "
                       f"{run()['measured_at']}; {path})")


def test_every_shortfall_is_named() -> None:
    assert len(kpi_shortfalls(run(tps=10.0, p95_ms=500.0, errors=10, operations=10), RS)) == 3
    assert kpi_shortfalls(run(errors=10), RS) == []  # 10 in 24,010: under 5 %


def test_an_old_good_run_does_not_save_a_fresh_bad_one(tmp_path: Path) -> None:
    path = evidence(tmp_path, run(measured_at="2026-11-01T00:00:00Z"), run(p95_ms=300.0))
    assert "p95 300.0 ms" in str(load_evidence_problem(path, PRIMARY, RS, NOW))


# --- the restore record ---

def record(ok: bool = True, finished: datetime = NOW - timedelta(days=2),
           **last: Any) -> str:
    success = {"finished_at": finished.isoformat(), "source": "db1", "target": "spare",
               "backup_label": "20261124-010000F", "rows_verified": 1234} | last
    return json.dumps({"ok": ok, "finished_at": NOW.isoformat(), "message": "boom",
                       "last_success": success})


WHERE = "db1:/var/lib/bgdb/status/restore-drill.json"


def test_recent_restore_passes() -> None:
    assert restore_record_problem(record(), WHERE, RS, NOW) is None


def test_no_record() -> None:
    assert restore_record_problem(None, WHERE, RS, NOW) == (
        f"no restore of this primary's backups has been recorded ({WHERE} is missing): run a "
        "restore drill: python -m bgdb.restore --to <spare host> (README, Backups)")


def test_only_failed_restores() -> None:
    text = json.dumps({"ok": False, "finished_at": "2026-11-26T10:00:00+00:00",
                       "message": "db1: could not stop PostgreSQL", "last_success": None})
    assert restore_record_problem(text, WHERE, RS, NOW) == (
        f"no restore of this primary's backups has succeeded yet ({WHERE}); the last attempt "
        "failed at 2026-11-26T10:00:00+00:00: db1: could not stop PostgreSQL: run a restore "
        "drill: python -m bgdb.restore --to <spare host> (README, Backups)")


def test_stale_restore() -> None:
    problem = restore_record_problem(record(finished=NOW - timedelta(days=45)), WHERE, RS, NOW)
    assert problem == (
        "the last successful restore (backup 20261124-010000F onto spare) is 45.0 days old "
        f"({WHERE}); the limit is 30 days (readiness_restore_drill_max_age_days): run a restore "
        "drill: python -m bgdb.restore --to <spare host> (README, Backups)")


def test_a_failed_attempt_after_a_recent_success_still_passes() -> None:
    assert restore_record_problem(record(ok=False), WHERE, RS, NOW) is None


def test_a_restore_that_read_nothing_back_is_no_test() -> None:
    problem = restore_record_problem(record(rows_verified=0), WHERE, RS, NOW)
    assert "names no backup label or read no rows back" in str(problem)
    problem = restore_record_problem(record(backup_label=""), WHERE, RS, NOW)
    assert "names no backup label" in str(problem)


def test_what_the_benchmark_writes_is_what_the_check_reads(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """bench/load_agents.py's own writer: a run with provenance the check accepts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "load_agents", Path(__file__).resolve().parents[3] / "bench" / "load_agents.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "load_agents", bench)  # its dataclasses look it up
    spec.loader.exec_module(bench)
    path = tmp_path / "load_evidence.json"
    bench.write_evidence(path, [run(measured_at=bench.now_iso())], [], [], {}, {}, fresh=True)
    written = json.loads(path.read_text())["results"][0]
    assert written["git_commit"] and written["tool"] == "bench/load_agents.py"
    assert written["tool_version"] and written["tool_sha256"]
    assert load_evidence_problem(path, PRIMARY, RS, datetime.now(UTC)) is None
