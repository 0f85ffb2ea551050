"""First deploy and no-change re-deploy time on sandbox labs shaped like the demo lab (host 1 the
primary and monitoring host, the others spare nodes), with pyinfra's own minimal deploy on the same
lab and inventory as the floor.

    .venv/bin/python bench/deploy_times.py [--sizes 1 3] [--release 12] [--baseline main]

--baseline REF also runs that git revision's deploy (a `git archive` copy) on the same lab right
after this one's no-change deploy: its no-change time beside ours, in the same conditions; then
its first deploy on the lab booted afresh (same size, same secrets).

Prints figures side by side from one run; not a test (timings on a shared machine are noisy: the
load average is printed with them). Each size gets its own lab (`bench<N>`), torn down afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.runner import REPO, run_deploy  # noqa: E402
from sandbox import hosts, image  # noqa: E402

MINIMAL = Path(__file__).resolve().parent / "minimal_deploy.py"


def baseline_checkout(ref: str, into: Path) -> Path:
    """A copy of the repository at `ref` (its deploy imports its own modules: pyinfra puts the
    working directory on sys.path ahead of the editable install's finder)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _baseline_env(lab: str) -> dict[str, str]:
    # The same secrets as this deploy's (default .secrets/ beside the code), or it would see new
    # passwords, certificates and a new repository key.
    return {"BGDB_LAB": lab,
            "BGDB_SECRETS_DIR": os.environ.get("BGDB_SECRETS_DIR", str(REPO / ".secrets"))}


def baseline_first(size: int, release: str, baseline: Path) -> float:
    """The baseline's first deploy on a freshly booted lab of the same size."""
    lab = f"bench{size}"
    hosts.up(lab, hosts.default_specs(size, release))
    try:
        first = run_deploy(_baseline_env(lab), cwd=baseline)
        if first.returncode != 0:
            raise SystemExit(f"baseline first deploy failed:\n{first.report()}")
        return first.seconds
    finally:
        hosts.down(lab)


def measure(size: int, release: str, baseline: Path | None) -> dict[str, float | int]:
    lab = f"bench{size}"
    started = time.monotonic()
    hosts.up(lab, hosts.default_specs(size, release))
    boot = time.monotonic() - started
    load_before = os.getloadavg()[0]
    try:
        env = {"BGDB_LAB": lab}
        first = run_deploy(env)
        if first.returncode != 0:
            raise SystemExit(f"first deploy failed:\n{first.report()}")
        second = run_deploy(env)
        if second.returncode != 0:
            raise SystemExit(f"second deploy failed:\n{second.report()}")
        old: dict[str, float | int] = {}
        if baseline:
            prior = run_deploy(_baseline_env(lab), cwd=baseline)
            if prior.returncode != 0:
                raise SystemExit(f"baseline deploy failed:\n{prior.report()}")
            old = {"baseline_s": prior.seconds, "baseline_changed": len(prior.changed)}
        run_deploy(env, deploy_file=str(MINIMAL))  # its first run creates the marker
        minimal = run_deploy(env, deploy_file=str(MINIMAL))
        row: dict[str, float | int] = {
            **old, "hosts": size, "boot_s": boot, "first_s": first.seconds,
            "second_s": second.seconds, "minimal_s": minimal.seconds, "ops": second.total_ops,
            "changed_on_second": len(second.changed)}
    finally:
        hosts.down(lab)
    if baseline:
        row["baseline_first_s"] = baseline_first(size, release, baseline)
    row["load"] = (load_before + os.getloadavg()[0]) / 2
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--release", default=image.DEFAULT_RELEASE)
    ap.add_argument("--baseline", metavar="REF", help="also time REF's no-change and first deploys")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bgdb-baseline-") as tmp:
        base = baseline_checkout(args.baseline, Path(tmp)) if args.baseline else None
        rows = [measure(n, args.release, base) for n in args.sizes]
    print(f"{'hosts':>5} {'boot s':>7} {'first s':>8} {'no-change s':>12} {'minimal s':>10} "
          f"{'no-change/minimal':>17} {'ops':>5} {'changed 2nd':>11} {'load':>5}")
    for r in rows:
        print(f"{r['hosts']:>5} {r['boot_s']:>7.1f} {r['first_s']:>8.1f} {r['second_s']:>12.1f} "
              f"{r['minimal_s']:>10.2f} {r['second_s'] / r['minimal_s']:>17.1f} {r['ops']:>5} "
              f"{r['changed_on_second']:>11} {r['load']:>5.1f}")
    for r in rows:
        if "baseline_s" in r:
            print(f"{r['hosts']} host(s): {args.baseline} no-change deploy {r['baseline_s']:.1f} s "
                  f"({r['baseline_changed']} changed) on the same lab, "
                  f"{r['baseline_s'] / r['second_s']:.1f}x this one; its first deploy "
                  f"{r['baseline_first_s']:.1f} s on a fresh lab, "
                  f"{r['baseline_first_s'] / r['first_s']:.1f}x this one")
    print("(load: 1-minute load average at the start and the end of the size's deploys, "
          "on a 2-core machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
