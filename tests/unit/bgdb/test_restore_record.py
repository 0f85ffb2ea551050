"""The record a restore leaves on the source host (what the readiness check reads)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bgdb.restore import make_plan, make_record
from checks.evidence import restore_record_problem
from deploy.hostdata import InventoryHost
from deploy.settings import Data, readiness_settings

DATA = {"postgres_allowed_cidrs": ["10.0.0.0/24"], "ssh_user": "root"}
HOSTS = [InventoryHost("db1", "10.0.0.11", ("postgres_primary",), dict(DATA)),
         InventoryHost("spare", "10.0.0.12", (), dict(DATA))]
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLAN = make_plan(HOSTS, None, "spare", None, delta=False)


def test_success_is_the_last_success_and_passes_the_check() -> None:
    rec = make_record(None, PLAN, ok=True, started=T0, finished=T0 + timedelta(seconds=42),
                      message="restored", label="20261126-010000F",
                      tables={"public.agents": 10, "public.schema_migrations": 5})
    assert rec["rows_verified"] == 15 and rec["duration_seconds"] == 42.0
    assert rec["last_success"] == {
        "finished_at": "2026-11-26T12:00:42+00:00", "source": "db1", "target": "spare",
        "in_place": False, "target_time": None, "backup_label": "20261126-010000F",
        "database": "background_agents", "rows_verified": 15}
    rs = readiness_settings(Data({}, env={}))
    assert restore_record_problem(json.dumps(rec), "x", rs, T0 + timedelta(days=1)) is None


def test_a_failure_keeps_the_previous_success() -> None:
    ok = make_record(None, PLAN, ok=True, started=T0, finished=T0, message="restored",
                     label="L", tables={"t": 1})
    failed = make_record(ok, PLAN, ok=False, started=T0, finished=T0, message="copy failed")
    assert failed["ok"] is False and failed["message"] == "copy failed"
    assert failed["last_success"] == ok["last_success"]
    assert make_record({"junk": 1}, PLAN, ok=False, started=T0, finished=T0,
                       message="x")["last_success"] is None
