"""Scheduled maintenance of the agents database: sql/maintenance/{daily,weekly,monthly}.sql run by
systemd timers on the primary, through the same job runner as the backups.

Nothing here takes a lock that blocks the agents: ANALYZE, REFRESH ... CONCURRENTLY, plain
VACUUM, dropping expired partitions (lock_timeout 5 s), REINDEX ... CONCURRENTLY; never
VACUUM FULL or REINDEX DATABASE (README, "Maintenance").
"""

from __future__ import annotations

from pyinfra.api import deploy

from deploy import jobs, uploads
from deploy.settings import AppSettings, BackupSettings, MaintenanceSettings, PostgresSettings

SQL_DIR = f"{jobs.REMOTE}/sql/maintenance"
PERIODS = ("daily", "weekly", "monthly")


def sql_vars(mt: MaintenanceSettings) -> tuple[str, ...]:
    """psql variables the maintenance files read (each file has the same defaults)."""
    values = {"retention_days": mt.retention_days, "premake_days": mt.premake_days,
              "long_query_seconds": mt.long_query_seconds}
    out: list[str] = []
    for name, value in values.items():
        out += ["--var", f"{name}={value}"]
    return tuple(out)


def maintenance_jobs(mt: MaintenanceSettings, bk: BackupSettings, pg: PostgresSettings,
                     app: AppSettings) -> list[jobs.Job]:
    schedules = {"daily": mt.daily_schedule, "weekly": mt.weekly_schedule,
                 "monthly": mt.monthly_schedule}
    what = {"daily": "ANALYZE, view refresh, long-query log",
            "weekly": "VACUUM (ANALYZE), retention, database size",
            "monthly": "REINDEX CONCURRENTLY of bloated or invalid indexes"}
    return [
        jobs.Job(f"bgdb-maintenance-{period}", f"Database maintenance, {period}: {what[period]}",
                 schedules[period],
                 (*jobs.common_args(f"maintenance-{period}", bk.status_dir, pg.port,
                                    app.database),
                  "sql", "--file", f"{SQL_DIR}/{period}.sql", *sql_vars(mt)),
                 timeout="12h")
        for period in PERIODS
    ]


@deploy("Schedule database maintenance")
def configure_maintenance(mt: MaintenanceSettings, bk: BackupSettings, pg: PostgresSettings,
                          app: AppSettings, after: str | None = None) -> None:
    """The timers; `after` is the unit that runs PostgreSQL (HA mode: Patroni's). On a standby
    the job runner skips the run, so in HA mode every member has them and whoever leads runs
    them (partitions keep being created after a failover)."""
    uploads.sync(name="Upload the maintenance SQL", src=str(jobs.REPO / "sql" / "maintenance"),
                 dest=SQL_DIR, delete=True, mode="0644", dir_mode="0755")
    jobs.install_runner(bk.status_dir)
    jobs.install_timers(maintenance_jobs(mt, bk, pg, app), after=after or f"{pg.unit}.service",
                        what="maintenance")
