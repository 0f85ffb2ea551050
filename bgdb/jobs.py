"""Runner of the scheduled jobs on a database host (one systemd service per job, as postgres):

    python3 /usr/local/lib/bgdb/bgdb/jobs.py --name NAME [--status-dir DIR] [--port P]
        [--database DB] JOB [job options]

JOB is `backup` (pgBackRest full/diff), `verify` (pgbackrest verify), `dump` (pg_dump custom
format, checked with pg_restore --list, old dumps pruned), `sql` (a maintenance file run by
psql) or `info` (with a backup host: the primary records `pgbackrest info` and the backup host's
verify result for its exporter). Every run:

* on a standby does nothing and says so: the jobs run on the primary only (on a backup host,
  `--repo-host`, there is no local PostgreSQL: no such check, and no system event);
* logs to stdout/stderr, i.e. the journal under the unit's name, and exits 1 on failure;
* writes STATUS_DIR/NAME.json: {"job", "ok", "exit_code", "started_at", "finished_at",
  "duration_seconds", "message", "last_success_at", "last_success_timestamp"} (ISO 8601 UTC and
  Unix seconds), mode 0644;
* updates STATUS_DIR/backup.json, the exporter's backup_status_file (format documented in
  exporters/backup_status.py): "pgbackrest_info" (after backup and verify jobs),
  "verify_timestamp"/"verify_ok", "dump_timestamp"/"dump_bytes", and "jobs": {NAME: {"ok",
  "exit_code", "finished_at", "last_success_timestamp"}} for every job;
* on failure also inserts a system_events row (severity ERROR, event_type scheduled_job_failed),
  best effort, so that the failure is visible where the agents' errors are.

Debian 12's python3 and the standard library only: it runs on the hosts.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BACKUP_STATUS = "backup.json"
_VAR = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)=(?P<value>[A-Za-z0-9_.:-]+)$")
# pgBackRest's error when backup-standby=y finds no standby among the pgN-hosts.
NO_STANDBY = "unable to find standby"
# pgbackrest verify (2.45) exits 0 even when it finds invalid files: read its report.
_VERIFY_PROBLEM = re.compile(r"status: error|\b(ERROR|WARN): ")

Figures = dict[str, Any]


class JobError(RuntimeError):
    """The job failed; `figures` are still recorded (e.g. verify_ok = false)."""

    def __init__(self, message: str, figures: Figures | None = None) -> None:
        super().__init__(message)
        self.figures = figures or {}


def log(message: str) -> None:
    print(message, flush=True)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def run(cmd: Sequence[str], *, capture: bool = False, echo: bool = True,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; its output goes to the journal (captured output is echoed unless told)."""
    log("+ " + shlex.join(cmd))
    proc = subprocess.run(list(cmd), text=True, capture_output=capture, input=input_text,
                          check=False)
    if capture and echo:
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
    return proc


def must(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return succeeded(cmd, run(cmd, **kwargs))


def succeeded(cmd: Sequence[str], proc: subprocess.CompletedProcess[str]
              ) -> subprocess.CompletedProcess[str]:
    """proc, or a JobError naming the exit status and the last line of its captured stderr."""
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-1:]
        raise JobError(f"{cmd[0]} exited with {proc.returncode}" +
                       (f": {detail[0]}" if detail else ""))
    return proc


def psql(args: argparse.Namespace, *extra: str, database: str | None = None) -> list[str]:
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", str(args.port), "-d",
            database or args.database, *extra]


def is_standby(args: argparse.Namespace) -> bool:
    proc = run(psql(args, "-At", "-c", "SELECT pg_is_in_recovery()", database="postgres"),
               capture=True, echo=False)
    if proc.returncode != 0:
        raise JobError(f"PostgreSQL does not answer on port {args.port}: "
                       f"{proc.stderr.strip()}")
    return proc.stdout.strip() == "t"


# --- the jobs --------------------------------------------------------------------------------

def pgbackrest_info(stanza: str) -> list[Any] | None:
    proc = run(["pgbackrest", f"--stanza={stanza}", "--output=json", "info"], capture=True,
               echo=False)
    try:
        value = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        value = None
    return value if isinstance(value, list) else None


def job_backup(args: argparse.Namespace) -> tuple[Figures, str]:
    cmd = ["pgbackrest", f"--stanza={args.stanza}", f"--type={args.type}", "backup"]
    proc = run(cmd, capture=True)
    where = ""
    if proc.returncode != 0 and NO_STANDBY in proc.stdout + proc.stderr:
        # HA mode (backup-standby=y) with no standby streaming: a backup from the leader alone
        # beats none (pgBackRest 2.45 has no backup-standby=prefer).
        log("no standby to copy from: backing up from the leader alone")
        cmd = [*cmd[:-1], "--no-backup-standby", "backup"]
        proc = run(cmd, capture=True)
        where = " from the leader (no standby available)"
    succeeded(cmd, proc)
    info = pgbackrest_info(args.stanza)
    if info is None:
        return {}, f"{args.type} backup done{where} (pgbackrest info unavailable)"
    backups = [b for s in info for b in s.get("backup") or []]
    label = backups[-1].get("label", "?") if backups else "?"
    return {"pgbackrest_info": info}, f"{args.type} backup {label} done{where}"


def job_verify(args: argparse.Namespace) -> tuple[Figures, str]:
    proc = run(["pgbackrest", f"--stanza={args.stanza}", "verify"], capture=True)
    output = proc.stdout + proc.stderr
    figures: Figures = {"verify_timestamp": time.time(),
                        "verify_ok": proc.returncode == 0 and not _VERIFY_PROBLEM.search(output)}
    info = pgbackrest_info(args.stanza)
    if info is not None:
        figures["pgbackrest_info"] = info
    if not figures["verify_ok"]:
        problems = [line.strip() for line in output.splitlines()
                    if _VERIFY_PROBLEM.search(line) or "invalid" in line]
        raise JobError("pgbackrest verify found problems: " + "; ".join(problems[:5]), figures)
    return figures, "repository verified"


def job_dump(args: argparse.Namespace) -> tuple[Figures, str]:
    directory = Path(args.dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    final = directory / f"{args.database}-{stamp}.dump"
    partial = final.with_name(final.name + ".partial")
    must(["pg_dump", "-p", str(args.port), "--format=custom", "--file", str(partial),
          args.database])
    # A dump pg_restore cannot read is no backup: list its table of contents before keeping it.
    listing = must(["pg_restore", "--list", str(partial)], capture=True, echo=False)
    entries = [ln for ln in listing.stdout.splitlines() if ln.strip() and not ln.startswith(";")]
    if not entries:
        raise JobError(f"pg_restore --list shows no entries in {partial}")
    _fsync(partial)
    partial.rename(final)
    # Roles (with their password verifiers) are not in a database's dump.
    globals_file = directory / f"globals-{stamp}.sql"
    must(["pg_dumpall", "-p", str(args.port), "--globals-only", "--file", str(globals_file)])
    _fsync(globals_file)
    _fsync(directory)
    removed = prune_dumps(directory, args.database, args.keep_days, keep={final, globals_file})
    size = final.stat().st_size
    return ({"dump_timestamp": time.time(), "dump_bytes": size},
            f"{final} ({size} bytes, {len(entries)} entries listed); "
            f"removed {len(removed)} old file(s)")


def prune_dumps(directory: Path, database: str, keep_days: int, keep: set[Path],
                now: float | None = None) -> list[Path]:
    """Delete dumps and globals files older than keep_days, and leftovers of failed runs; the
    newest dump is kept whatever its age."""
    cutoff = (now if now is not None else time.time()) - keep_days * 86400
    dumps = sorted(directory.glob(f"{database}-*.dump"))
    newest = dumps[-1] if dumps else None
    removed = []
    candidates = [*dumps, *directory.glob("globals-*.sql"), *directory.glob("*.partial")]
    for path in candidates:
        if path in keep or path == newest:
            continue
        if path.suffix == ".partial" or path.stat().st_mtime < cutoff:
            path.unlink()
            removed.append(path)
    return removed


def job_sql(args: argparse.Namespace) -> tuple[Figures, str]:
    variables: list[str] = []
    for item in args.var:
        if not _VAR.match(item):
            raise JobError(f"bad --var {item!r}: expected name=value (letters, digits, _.:-)")
        variables += ["-v", item]
    must(psql(args, *variables, "-f", args.file))
    return {}, f"{Path(args.file).name} done"


def job_info(args: argparse.Namespace) -> tuple[Figures, str]:
    """With the repository on a backup host, the backups and verify runs happen there: the
    primary asks pgBackRest for the repository's state (over its SSH link to the backup host)
    and copies the last verify result from the backup host's status file."""
    info = pgbackrest_info(args.stanza)
    if info is None:
        raise JobError(f"pgbackrest info for stanza {args.stanza} failed (is the backup host "
                       "reachable? see /var/log/pgbackrest)")
    figures: Figures = {"pgbackrest_info": info}
    message = "repository state recorded"
    if args.repo_status:
        login, _, path = args.repo_status.partition(":")
        proc = run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o",
                    "LogLevel=ERROR", *(["-p", str(args.ssh_port)] if args.ssh_port else []),
                    login, f"cat {shlex.quote(path)} 2>/dev/null || echo '{{}}'"],
                   capture=True, echo=False)
        try:
            remote = json.loads(proc.stdout) if proc.returncode == 0 else None
        except ValueError:
            remote = None
        if not isinstance(remote, dict):
            raise JobError(f"could not read {args.repo_status}: {proc.stderr.strip()[:300]}",
                           figures)
        for key in ("verify_timestamp", "verify_ok"):
            if key in remote:
                figures[key] = remote[key]
        figures["repo_host_jobs"] = remote.get("jobs", {})  # {} until a job ran there
        message += f" (and {args.repo_status})"
    return figures, message


JOBS: dict[str, Callable[[argparse.Namespace], tuple[Figures, str]]] = {
    "backup": job_backup, "verify": job_verify, "dump": job_dump, "sql": job_sql,
    "info": job_info,
}


# --- status files ----------------------------------------------------------------------------

def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, value: Any) -> None:
    """Replace atomically (a reader sees the old or the new file, never half of one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    _fsync(path.parent)


def record(status_dir: Path, name: str, *, ok: bool, exit_code: int, started: float,
           finished: float, message: str, figures: Figures) -> dict[str, Any]:
    status_dir.mkdir(parents=True, exist_ok=True)
    with open(status_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # jobs may finish at the same time
        previous = read_json(status_dir / f"{name}.json")
        previous = previous if isinstance(previous, dict) else {}
        last_ok = finished if ok else previous.get("last_success_timestamp")
        status = {
            "job": name, "ok": ok, "exit_code": exit_code, "started_at": iso(started),
            "finished_at": iso(finished), "duration_seconds": round(finished - started, 3),
            "message": message[:2000],
            "last_success_timestamp": last_ok,
            "last_success_at": iso(last_ok) if isinstance(last_ok, (int, float)) else None,
        }
        write_json(status_dir / f"{name}.json", status)
        summary = read_json(status_dir / BACKUP_STATUS)
        summary = summary if isinstance(summary, dict) else {}
        summary.update(figures)
        summary.setdefault("jobs", {})[name] = {
            k: status[k] for k in ("ok", "exit_code", "finished_at", "last_success_timestamp")}
        summary["updated_at"] = iso(finished)
        write_json(status_dir / BACKUP_STATUS, summary)
    return status


def report_failure(args: argparse.Namespace, name: str, message: str) -> None:
    """An ERROR system event, best effort (the table may not exist, the server may be down)."""
    sql = ("INSERT INTO system_events (event_type, severity, source, event_data) "
           "VALUES ('scheduled_job_failed', 'ERROR', 'bgdb-job', "
           "jsonb_build_object('job', :'job', 'message', :'message'));\n")
    # The runner exits right after this: its environment is ours to change.
    os.environ.setdefault("PGCONNECT_TIMEOUT", "5")
    os.environ["PGOPTIONS"] = "-c statement_timeout=5000"
    cmd = psql(args, "-v", f"job={name}", "-v", f"message={message[:1000]}")
    proc = run(cmd, capture=True, echo=False, input_text=sql)
    if proc.returncode != 0:
        log(f"could not record the failure as a system event: {proc.stderr.strip()}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- main ------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bgdb-job", description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", help="status file name (default: the job)")
    ap.add_argument("--status-dir", default="/var/lib/bgdb/status")
    ap.add_argument("--port", type=int, default=5432)
    ap.add_argument("--database", default="background_agents")
    ap.add_argument("--repo-host", action="store_true",
                    help="running on the backup host: no local PostgreSQL")
    sub = ap.add_subparsers(dest="job", required=True)
    p = sub.add_parser("backup", help="pgBackRest backup")
    p.add_argument("--stanza", required=True)
    p.add_argument("--type", choices=("full", "diff", "incr"), required=True)
    p = sub.add_parser("verify", help="pgbackrest verify of the repository")
    p.add_argument("--stanza", required=True)
    p = sub.add_parser("dump", help="pg_dump, checked with pg_restore --list")
    p.add_argument("--dir", required=True)
    p.add_argument("--keep-days", type=int, required=True)
    p = sub.add_parser("info", help="record pgbackrest info (primary with a backup host)")
    p.add_argument("--stanza", required=True)
    p.add_argument("--repo-status", help="LOGIN@HOST:PATH of the backup host's backup.json")
    p.add_argument("--ssh-port", type=int)
    p = sub.add_parser("sql", help="a maintenance SQL file through psql")
    p.add_argument("--file", required=True)
    p.add_argument("--var", action="append", default=[], help="psql variable name=value")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    name = args.name or args.job
    status_dir = Path(args.status_dir)
    started = time.time()
    log(f"{name}: starting")
    figures: Figures = {}
    try:
        # `info` reads the repository only: every HA member records it for its own exporter.
        if not args.repo_host and args.job != "info" and is_standby(args):
            log(f"{name}: this host is a standby; the jobs run on the primary only: skipped")
            return 0
        figures, message = JOBS[args.job](args)
        ok = True
    except JobError as exc:
        figures, message, ok = exc.figures, str(exc), False
    except Exception as exc:  # noqa: BLE001 - record and report whatever broke
        message, ok = f"{type(exc).__name__}: {exc}", False
    finished = time.time()
    record(status_dir, name, ok=ok, exit_code=0 if ok else 1, started=started,
           finished=finished, message=message, figures=figures)
    if ok:
        log(f"{name}: ok in {finished - started:.1f}s: {message}")
        return 0
    print(f"{name}: FAILED after {finished - started:.1f}s: {message}", file=sys.stderr,
          flush=True)
    if not args.repo_host:
        report_failure(args, name, message)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
