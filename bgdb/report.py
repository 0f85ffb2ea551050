"""`bgdb report [HOST]`: bring the pgBadger report of a database host's PostgreSQL log up to date
(its bgdb-pgbadger job, started now and waited for) and copy it to reports/pgbadger/<host>/.

The report stays on the host too (deploy/pgbadger.py: /var/lib/bgdb/pgbadger, days kept by
pgbadger_retention_days); the copy is for a browser on this machine.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from pathlib import Path

from bgdb.remote import Target
from bgdb.targets import OperatorError
from deploy.hostdata import InventoryHost
from deploy.pgbadger import OUT_DIR, UNIT

REPO = Path(__file__).resolve().parent.parent
DEST = REPO / "reports" / "pgbadger"


def _sudo(t: Target, command: str) -> str:
    return f"sudo -n {command}" if t.inv.data.get("_sudo") else command


def _read(t: Target, command: str) -> bytes:
    """stdout of `command` as bytes (a tar stream is no text for testinfra's run)."""
    client = t.host.backend.client
    _, stdout, stderr = client.exec_command(_sudo(t, command), timeout=600)
    data = stdout.read()
    if stdout.channel.recv_exit_status() != 0:
        raise OperatorError(f"{t.name}: {command} failed: {stderr.read().decode().strip()}")
    return bytes(data)


def latest_day(root: Path) -> Path | None:
    """The newest day's report (YYYY/MM/DD/index.html) under a copied report."""
    days = sorted(root.glob("2*/*/*/index.html"))
    return days[-1] if days else None


def run(inv: InventoryHost, dest: Path = DEST) -> int:
    t = Target(inv)
    out = t.host.run(_sudo(t, f"systemctl start {UNIT}.service"))
    if out.rc != 0:
        print(f"bgdb: {t.name}: the pgBadger job failed:\n{t.journal(UNIT, 20)}")
        return 1
    data = _read(t, f"tar -C {shlex.quote(OUT_DIR)} -cf - .")
    target = dest / t.name
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    day = latest_day(target)
    print(f"pgBadger report of {t.name} ({inv.address}): {target / 'index.html'}")
    if day:
        print(f"  latest day: {day}")
    print(f"  on the host: {OUT_DIR} (job {UNIT}.service, timer {UNIT}.timer)")
    return 0
