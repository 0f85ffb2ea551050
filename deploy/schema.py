"""The agents' schema: roles.sql and the pending migrations, applied on the host by the same
runner operators use (`python -m bgdb.migrate`), only when its --check says there is work."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, deploy, operation
from pyinfra.api.exceptions import OperationError

from deploy import uploads
from deploy.settings import AppSettings, PostgresSettings

REPO = Path(__file__).resolve().parent.parent
REMOTE = "/usr/local/lib/bgdb"
CHECK_WORK_EXIT = 3  # bgdb.migrate --check: something to apply
DRIFT_EXIT = 2


def migrate_command(pg: PostgresSettings, app: AppSettings, connect_roles: tuple[str, ...],
                    app_role_limit: int, *flags: str) -> str:
    args = ["--dsn", f"dbname={app.database} port={pg.port}", "--app-user", app.user,
            "--app-connection-limit", str(app_role_limit)]
    for role in connect_roles:
        args += ["--grant-connect", role]
    return (f"cd {REMOTE} && runuser -u postgres -- python3 -m bgdb.migrate "
            f"{shlex.join([*args, *flags])}")


class SchemaWork(FactBase[tuple[int, list[str]]]):
    """(exit code of `bgdb.migrate --check`, its lines); any failure to run counts as work."""

    def command(self, check: str) -> str:
        return f"{check} 2>&1; echo \"__rc=$?\""

    def process(self, output: list[str]) -> tuple[int, list[str]]:
        rc = int(output[-1].removeprefix("__rc=")) if output and output[-1].startswith(
            "__rc=") else 1
        return rc, output[:-1]


@operation()
def apply_schema(check: str, apply: str):
    rc, lines = host.get_fact(SchemaWork, check=check)
    if rc == 0:
        return
    if rc == DRIFT_EXIT:
        raise OperationError("schema drift: " + " ".join(lines))
    yield apply


@deploy("Apply the agents' schema")
def apply_migrations(pg: PostgresSettings, app: AppSettings, app_role_limit: int,
                     connect_roles: tuple[str, ...] = (),
                     apply_if: Callable[[], bool] | None = None) -> None:
    """apply_if: HA mode's "this host leads now"; every member has the files, so the one that
    leads after a failover needs no upload."""
    for rel in ("bgdb/__init__.py", "bgdb/migrate.py", "sql/roles.sql", "sql/monitor_views.sql"):
        uploads.put(name=f"Upload {rel}", src=str(REPO / rel), dest=f"{REMOTE}/{rel}",
                    mode="0644", create_remote_dir=True)
    uploads.sync(name="Upload the migrations", src=str(REPO / "sql/migrations"),
                 dest=f"{REMOTE}/sql/migrations", delete=True, mode="0644", dir_mode="0755")
    apply_schema(name="Apply roles.sql and pending migrations",
                 check=migrate_command(pg, app, connect_roles, app_role_limit, "--check"),
                 apply=migrate_command(pg, app, connect_roles, app_role_limit), _if=apply_if)
