"""`bgdb`: the operator's command. deploy, check and where for now; status/troubleshoot/connect
build on the same inventory, settings and secrets."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from deploy.hostdata import load_inventory
from deploy.secrets import SecretError
from deploy.settings import Data, SettingsError, app_settings
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
         f"--readiness-report={reports / 'readiness.md'}", *args.pytest_args],
        cwd=REPO)


def cmd_where(args: argparse.Namespace) -> int:
    hosts = load_inventory()
    primary = next((h for h in hosts if "postgres_primary" in h.groups), None)
    if primary is None:
        print("no host in group postgres_primary")
        return 1
    app = app_settings(Data(primary.data))
    ca = REPO / ".secrets" / "ca" / "ca.crt"
    pwfile = REPO / ".secrets" / "passwords" / app.user
    print(f"""
PostgreSQL primary: {primary.name} ({primary.address}:{app.port}), database {app.database}
  connect:  PGPASSWORD="$(cat {pwfile})" .venv/bin/pgcli \\
              "host={primary.address} port={app.port} dbname={app.database} user={app.user} \\
               sslmode=verify-full sslrootcert={ca}"
  secrets:  {REPO / '.secrets'} (0700; generated passwords, the CA and host certificates)
  readiness report: {REPO / 'reports' / 'readiness.md'} (JUnit: reports/readiness.xml)
  sandbox:  `.venv/bin/python -m sandbox status` / `make down` removes every host
""")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bgdb", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("deploy", help="validate settings, then run the pyinfra deploy").set_defaults(
        func=cmd_deploy)
    p = sub.add_parser("check", help="production-readiness checks against the inventory")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k ssl)")
    p.set_defaults(func=cmd_check)
    sub.add_parser("where", help="how to connect and where to look").set_defaults(func=cmd_where)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (SettingsError, SecretError) as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
