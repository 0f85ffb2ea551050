"""pgBadger (the distribution's package) on every database host: an incremental HTML report of
PostgreSQL's log, brought up to date by a systemd timer, kept `pgbadger_retention_days`.

The log comes from the logging collector (the cluster's log/ directory, one file per weekday,
0600 postgres), with BASE_CONFIG's log_line_prefix in pgBadger's documented form and the log_*
settings it reads (statements over postgres_log_min_duration_ms, connections, lock waits,
checkpoints, temp files). The job runs as postgres, which alone can read the log; the report
directory is postgres's, 0750. `bgdb report` runs it now and copies the report here.
"""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from deploy import aptbatch, uploads
from deploy.monitoring_config import PgBadgerSettings, pgbadger_settings
from deploy.render import as_file
from deploy.settings import BASE_CONFIG, PostgresSettings

__all__ = ["install_pgbadger", "pgbadger_settings"]

UNIT = "bgdb-pgbadger"
OUT_DIR = "/var/lib/bgdb/pgbadger"
SCRIPT = "/usr/local/lib/bgdb/bgdb-pgbadger.sh"
PREFIX = BASE_CONFIG["log_line_prefix"]


def log_dir(pg: PostgresSettings) -> str:
    return f"{pg.data_dir}/{BASE_CONFIG['log_directory']}"


@deploy("Install the pgBadger report")
def install_pgbadger(pb: PgBadgerSettings, pg: PostgresSettings) -> None:
    if not pb.enabled:
        systemd.service(name=f"Stop {UNIT}.timer (pgbadger_enabled is False)",
                        service=f"{UNIT}.timer", running=False, enabled=False)
        return
    aptbatch.install(name="Install pgBadger", packages=["pgbadger"], cache_time=86400,
                     no_recommends=True)
    files.directory(name=f"Create {OUT_DIR}", path=OUT_DIR, user="postgres", group="postgres",
                    mode="0750")
    uploads.put(name="Install the pgBadger job", dest=SCRIPT, mode="0755", create_remote_dir=True,
                src=as_file("bgdb-pgbadger.sh.j2", out_dir=OUT_DIR, prefix=PREFIX,
                            log_dir=log_dir(pg), retention_days=pb.retention_days))
    service = uploads.put(name=f"Install {UNIT}.service",
                          dest=f"/etc/systemd/system/{UNIT}.service",
                          src=as_file("bgdb-pgbadger.service.j2", unit=UNIT, script=SCRIPT,
                                      after=f"{pg.unit}.service"), mode="0644")
    timer = uploads.put(name=f"Install {UNIT}.timer", dest=f"/etc/systemd/system/{UNIT}.timer",
                        src=as_file("bgdb-pgbadger.timer.j2", unit=UNIT, schedule=pb.schedule),
                        mode="0644")
    systemd.service(name=f"Enable {UNIT}.timer", service=f"{UNIT}.timer", running=True,
                    enabled=True, restarted=timer.will_change,
                    daemon_reload=service.will_change or timer.will_change)
