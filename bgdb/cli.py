"""`bgdb`: the operator's command. deploy, check, where; connect, status, troubleshoot and
maintenance run, all from the same inventory, settings and secrets as the deploy."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import RenderableType

from bgdb import connect, maintenance, status, tables, targets, troubleshoot
from bgdb.targets import OperatorError
from deploy import secrets
from deploy.hostdata import InventoryHost, is_sandbox, load_inventory
from deploy.secrets import SecretError
from deploy.settings import (
    Data,
    SettingsError,
    app_settings,
    exporter_settings,
    pgbouncer_port,
    postgres_settings,
    readiness_settings,
)
from deploy.validate import validate_hosts

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def cmd_deploy(args: argparse.Namespace) -> int:
    validate_hosts(load_inventory())  # fails here, with one line, before any host is contacted
    return subprocess.call([str(BIN / "pyinfra"), "-y", "inventory.py", "deploy.py"], cwd=REPO)


def cmd_check(args: argparse.Namespace) -> int:
    validate_hosts(load_inventory())
    reports = REPO / "reports"
    return subprocess.call(
        [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "checks",
         f"--junitxml={reports / 'readiness.xml'}",
         f"--readiness-report={reports / 'readiness.md'}", *check_pytest_args(args)],
        cwd=REPO)


def check_pytest_args(args: argparse.Namespace) -> list[str]:
    """`-k EXPR`, then the positional arguments, then everything after `--`, for pytest."""
    return [*(["-k", args.keyword] if args.keyword else []), *args.pytest_args,
            *args.passthrough]


def cmd_where(args: argparse.Namespace) -> int:
    hosts = load_inventory()
    primary = next((h for h in hosts if "postgres_primary" in h.groups), None)
    if primary is None:
        print("no host in group postgres_primary")
        return 1
    print(where_text(hosts, primary))
    return 0


def where_text(hosts: list[InventoryHost], primary: InventoryHost) -> str:
    """Every address and file an operator needs, from the inventory and the settings."""
    data = Data(primary.data)
    app = app_settings(data)
    ca = secrets.secrets_dir() / "ca" / "ca.crt"
    pwfile = secrets.secrets_dir() / "passwords" / app.user
    bouncer = pgbouncer_port(data)
    lines = [
        f"PostgreSQL primary: {primary.name} ({primary.address}:{app.port}), "
        f"database {app.database}",
        f'  pgcli:    PGPASSWORD="$(cat {pwfile})" pgcli "host={primary.address} port={app.port} '
        f'dbname={app.database} user={app.user} sslmode=verify-full sslrootcert={ca}"',
        "            or .venv/bin/bgdb connect (the same; --role readonly|monitor|ops, "
        "--via pgbouncer)",
        f'  agents:   "host={primary.address} port={bouncer} dbname={app.database} '
        f'user={app.user} sslmode=verify-full sslrootcert={ca}" (PgBouncer; '
        f"PostgreSQL itself: port {app.port}), password in {pwfile}",
        "  operate:  .venv/bin/bgdb status | troubleshoot | maintenance run daily",
        "Database hosts (PostgreSQL, PgBouncer, exporter metrics):",
    ]
    for h in hosts:
        if not {"postgres_primary", "postgres_replicas"} & set(h.groups):
            continue
        hd = Data(h.data)
        role = "primary" if "postgres_primary" in h.groups else "replica"
        ex = exporter_settings(hd, postgres_settings(hd))
        port = app_settings(hd).port
        metrics = (f"{'https' if ex.tls else 'http'}://{ex.listen_address or h.address}:"
                   f"{ex.port}/metrics" if ex.enabled else "exporter disabled")
        auth = f" (basic auth user {ex.basic_auth_user})" if ex.enabled and \
            ex.basic_auth_user else ""
        lines.append(f"  {h.name:16} {role:8} {h.address}:{port} pgbouncer :{pgbouncer_port(hd)}"
                     f"  {metrics}{auth}")
    rules = sorted(str(p) for p in (REPO / "alerts").glob("*.rules.yml"))
    evidence = readiness_settings(data).load_evidence
    lines += [
        f"Alert rules (Prometheus rule_files): {', '.join(rules) or 'none'}",
        f"  tested with promtool: {REPO / 'alerts' / 'tests'}",
        f"Readiness report: {REPO / 'reports' / 'readiness.md'} "
        f"(JUnit: {REPO / 'reports' / 'readiness.xml'}); `bgdb check [-k EXPR] [-- PYTEST ARGS]`",
        f"Load test evidence: {REPO / evidence if not evidence.startswith('/') else evidence}",
        f"Secrets: {secrets.secrets_dir()} (0700; generated passwords, the CA and host "
        "certificates)",
    ]
    lines.append(monitoring_where(hosts))
    if is_sandbox():
        lines.append("Sandbox: `.venv/bin/python -m sandbox status` / `make down` removes "
                     "every host")
    return "\n".join(lines)


def monitoring_where(hosts: list[Any]) -> str:
    """Prometheus, Alertmanager and the pgBadger reports (deploy/monitoring.py, pgbadger.py)."""
    from deploy.monitoring_config import ALERTMANAGER_PORT, PROMETHEUS_PORT, pgbadger_settings
    from deploy.pgbadger import OUT_DIR

    lines = []
    for h in (h for h in hosts if "monitoring" in h.groups):
        lines += [f"Monitoring on {h.name}: Prometheus http://{h.address}:{PROMETHEUS_PORT}/ "
                  f"(alerts: /alerts, targets: /targets)",
                  f"  Alertmanager http://{h.address}:{ALERTMANAGER_PORT}/ (reachable from "
                  "monitoring_allowed_cidrs); Grafana dashboards: dashboards/ (README)"]
    if not lines:
        lines.append("Monitoring: no host in group monitoring (no Prometheus deployed)")
    dbs = [h for h in hosts if {"postgres_primary", "postgres_replicas"} & set(h.groups)
           and pgbadger_settings(Data(h.data)).enabled]
    if dbs:
        lines.append(f"Log reports (pgBadger): .venv/bin/bgdb report [HOST] -> "
                     f"{REPO / 'reports' / 'pgbadger'}/<host>/index.html; on the hosts "
                     f"{OUT_DIR} ({', '.join(h.name for h in dbs)})")
    return "\n".join(lines)


def primary_or(host: str | None) -> InventoryHost:
    """The host named, else the primary: in HA mode the member that leads now."""
    if host:
        return targets.select([host])[0]
    from bgdb import patroni

    return patroni.leader_host() or targets.select([], default_primary=True)[0]


def cmd_connect(args: argparse.Namespace) -> int:
    inv = primary_or(args.host)
    return connect.run(inv, args.role, args.via, args.pgcli_args)


def _report(args: argparse.Namespace, results: list[dict[str, Any]], problems: list[str],
            render: Callable[[dict[str, Any]], RenderableType]) -> None:
    if args.json:
        print(tables.dump_json({"hosts": results, "unreachable": problems}))
    else:
        out = tables.console()
        for result in results:
            out.print(render(result))
    for line in problems:
        print(f"bgdb: {line}", file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    from bgdb import patroni

    members = patroni.members()
    view = patroni.first_view(members) if members else None
    results, problems = status.collect(targets.select(args.hosts))
    if members:  # HA mode: the roles are Patroni's, not the inventory's
        roles = {m.get("name"): m.get("role") for m in (view or {}).get("members", [])}
        for result in results:
            result["role"] = roles.get(result["host"], "not in Patroni's view")
        if args.json:
            print(tables.dump_json({"cluster": view, "hosts": results, "unreachable": problems}))
            for line in problems:
                print(f"bgdb: {line}", file=sys.stderr)
            return 2 if problems or view is None else 0
        tables.console().print(status.render_cluster(view))
    _report(args, results, problems, status.render_host)
    return 2 if problems or (members and view is None) else 0


def cmd_troubleshoot(args: argparse.Namespace) -> int:
    th = troubleshoot.Thresholds(
        connection_use_percent=args.connection_use_percent,
        long_query_seconds=args.long_query_seconds, slow_statement_ms=args.slow_statement_ms,
        dead_tuple_ratio=args.dead_tuple_ratio, dead_tuple_min=args.dead_tuple_min,
        disk_free_percent=args.disk_free_percent)
    results, problems = troubleshoot.collect(targets.select(args.hosts), th)
    _report(args, results, problems, troubleshoot.render_host)
    if problems:
        return 2
    return 1 if any(r["flagged"] for r in results) else 0


def cmd_maintenance(args: argparse.Namespace) -> int:
    inv = primary_or(args.host)
    return maintenance.run(inv, args.period)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from bgdb import loadtest

    inv = primary_or(None)
    return loadtest.run(inv, args.agents, args.duration, args.evidence,
                        confirm_existing_data=args.confirm_existing_data, cleanup=args.cleanup)


def cmd_report(args: argparse.Namespace) -> int:
    from bgdb import report

    inv = primary_or(args.host)
    return report.run(inv)


def cmd_promote(args: argparse.Namespace) -> int:
    from bgdb import promote

    return promote.main([args.replica, *(["--force"] if args.force else []),
                         "--timeout", str(args.timeout)])


def cmd_switchover(args: argparse.Namespace) -> int:
    from bgdb import patroni

    patroni.switchover(args.to, args.timeout)
    return 0


def _operator_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("connect", usage="bgdb connect [HOST] [--via pgbouncer] "
                       "[--role app|readonly|monitor|ops] [-- PGCLI OPTIONS]",
                       help="pgcli on a database host (TLS verify-full, no password on the "
                       "command line)")
    p.add_argument("host", nargs="?", help="inventory name or address (default: the primary)")
    p.add_argument("--via", choices=("pgbouncer",), help="through PgBouncer (port 6432)")
    p.add_argument("--role", choices=("app", "readonly", "monitor", "ops"), default="app",
                   help="login role (default: app, the agents' role)")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("status", help="agents, heartbeats, replication, backups, pools per host")
    p.add_argument("hosts", nargs="*", help="inventory names or addresses (default: all DB hosts)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(func=cmd_status)

    d = troubleshoot.Thresholds()
    p = sub.add_parser("troubleshoot", help="the troubleshooting guide, run: flags problems, "
                       "says what to do; exit 1 when anything is flagged")
    p.add_argument("hosts", nargs="*", help="inventory names or addresses (default: all DB hosts)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.add_argument("--long-query-seconds", type=float, default=d.long_query_seconds,
                   help="flag queries running longer (default %(default)s)")
    p.add_argument("--slow-statement-ms", type=float, default=d.slow_statement_ms,
                   help="flag statements with a longer mean time (default %(default)s)")
    p.add_argument("--connection-use-percent", type=float, default=d.connection_use_percent,
                   help="flag client connections over this share of max_connections "
                   "(default %(default)s)")
    p.add_argument("--dead-tuple-ratio", type=float, default=d.dead_tuple_ratio,
                   help="flag tables with more dead tuples (default %(default)s)")
    p.add_argument("--dead-tuple-min", type=int, default=d.dead_tuple_min,
                   help="... and at least this many (default %(default)s)")
    p.add_argument("--disk-free-percent", type=float, default=d.disk_free_percent,
                   help="flag a data volume with less free space (default %(default)s)")
    p.set_defaults(func=cmd_troubleshoot)

    p = sub.add_parser("promote", help="promote a replica to primary; repoint the others")
    p.add_argument("replica")
    p.add_argument("--force", action="store_true",
                   help="even if the old primary still answers as a primary")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("switchover", help="HA mode: hand the leadership to a standby (planned "
                       "maintenance), through Patroni")
    p.add_argument("--to", help="the member to lead (default: Patroni's choice)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_switchover)
    # `restore` hands all its arguments to bgdb.restore's own parser (see main()).
    sub.add_parser("restore", help="restore the latest backup or a point in time (see --help)")
    p = sub.add_parser("loadtest", help="the load benchmark against the primary through "
                       "PgBouncer; records the evidence the readiness check reads and removes "
                       "its own rows when it ends")
    p.add_argument("--agents", default="50", help="fleet sizes, comma-separated (default 50)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per fleet size")
    p.add_argument("--evidence", type=Path, help="default: reports/load_evidence.json")
    p.add_argument("--confirm-existing-data", action="store_true",
                   help="load the primary even though it holds other agents' data")
    p.add_argument("--cleanup", action="store_true",
                   help="only remove what earlier (killed) load tests left behind")
    p.set_defaults(func=cmd_loadtest)
    p = sub.add_parser("report", help="bring the pgBadger log report up to date and copy it to "
                       "reports/pgbadger/<host>/; says where")
    p.add_argument("host", nargs="?", help="inventory name or address (default: the primary)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("maintenance", help="scheduled maintenance jobs, on demand")
    msub = p.add_subparsers(dest="action", required=True)
    r = msub.add_parser("run", help="run a maintenance job now on the primary and wait for it")
    r.add_argument("period", choices=("daily", "weekly", "monthly"))
    r.add_argument("--host", help="another database host than the primary")
    r.set_defaults(func=cmd_maintenance)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["restore"]:  # all its arguments go to bgdb.restore's own parser
        from bgdb import restore

        return restore.main(argv[1:])
    parser = argparse.ArgumentParser(prog="bgdb", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("deploy", help="validate settings, then run the pyinfra deploy").set_defaults(
        func=cmd_deploy)
    p = sub.add_parser("check", help="production-readiness checks against the inventory "
                       "(`-- ARGS` passes ARGS to pytest)")
    p.add_argument("-k", dest="keyword", metavar="EXPR",
                   help="only the checks matching EXPR (pytest -k), e.g. -k pgbouncer")
    p.add_argument("pytest_args", nargs="*", help="pytest arguments (e.g. a checks file)")
    p.set_defaults(func=cmd_check)
    sub.add_parser("where", help="how to connect and where to look").set_defaults(func=cmd_where)
    _operator_commands(sub)
    # `bgdb connect ... -- OPTIONS`: what follows -- goes to pgcli untouched.
    # `bgdb check ... -- PYTEST ARGS`: likewise, to pytest.
    passthrough: list[str] = []
    if argv[:1] in (["connect"], ["check"]) and "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    args.pgcli_args = args.passthrough = passthrough
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (OperatorError, SecretError) as exc:
        print(f"bgdb: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
