"""Readiness items proven by evidence rather than by host state: a recent load test of the
primary that met the seed's KPIs, and a recent successful restore of its backups. Limits and
KPI thresholds are the readiness_* settings (group_data/all.py); the logic is checks/evidence.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bgdb.remote import Target
from checks import ha
from checks.evidence import RESTORE_RECORD, Primary, load_evidence_problem, restore_record_problem
from deploy.settings import (
    Data,
    ReadinessSettings,
    backup_settings,
    ha_settings,
    readiness_settings,
)

REPO = Path(__file__).resolve().parent.parent


def _rs(primary: Target) -> ReadinessSettings:
    return readiness_settings(Data(primary.inv.data))


def test_load_tested(primary: Target) -> None:
    """Load testing done: a recent load test of the primary met the KPIs (ops/s, p95, error %)"""
    rs = _rs(primary)
    path = Path(rs.load_evidence)
    path = path if path.is_absolute() else REPO / path
    names = {primary.inv.address, primary.name}
    hav = ha_settings(Data(primary.inv.data))
    if hav.enabled and hav.vip:  # HA mode: a load test through the agents' one address counts
        names.add(hav.vip)
    who = Primary(primary.name, names, primary.app.database)
    problem = load_evidence_problem(path, who, rs, datetime.now(UTC))
    assert problem is None, problem


def test_restore_tested(primary: Target) -> None:
    """A restore has been tested: a recent successful restore of the primary's backups"""
    # HA mode: the record is on whichever member led when the drill ran; one good one counts.
    problems = []
    for target in ha.members() or (primary,):
        where = f"{target.name}:{backup_settings(Data(target.inv.data)).status_dir}/" \
                f"{RESTORE_RECORD}"
        f = target.host.file(where.partition(":")[2])
        text = f.content_string if f.exists else None
        problem = restore_record_problem(text, where, _rs(target), datetime.now(UTC))
        if problem is None:
            return
        problems.append(problem)
    assert not problems, "; ".join(problems)
