"""First deploy and no-change re-deploy time on 1 and 3 sandbox database hosts.

    .venv/bin/python bench/deploy_times.py [--sizes 1 3]

Prints figures side by side from one run; not a test (timings on a shared machine are noisy).
Each size gets its own lab (`bench<N>`), torn down afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.runner import run_deploy  # noqa: E402
from sandbox import hosts  # noqa: E402


def measure(size: int) -> dict[str, float | int]:
    lab = f"bench{size}"
    specs = [hosts.HostSpec(f"db{i}", ("postgres_primary",)) for i in range(1, size + 1)]
    started = time.monotonic()
    hosts.up(lab, specs)
    boot = time.monotonic() - started
    try:
        env = {"BGDB_LAB": lab}
        first = run_deploy(env)
        if first.returncode != 0:
            raise SystemExit(f"first deploy failed:\n{first.output[-3000:]}")
        second = run_deploy(env)
        return {"hosts": size, "boot_s": boot, "first_s": first.seconds,
                "second_s": second.seconds, "ops": first.total_ops,
                "changed_on_second": len(second.changed)}
    finally:
        hosts.down(lab)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3])
    args = ap.parse_args()
    rows = [measure(n) for n in args.sizes]
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    print(f"{'hosts':>5} {'boot s':>7} {'first deploy s':>15} {'no-change s':>12} "
          f"{'ratio':>6} {'ops':>5} {'changed 2nd':>11}")
    for r in rows:
        print(f"{r['hosts']:>5} {r['boot_s']:>7.1f} {r['first_s']:>15.1f} {r['second_s']:>12.1f} "
              f"{r['first_s'] / r['second_s']:>6.1f} {r['ops']:>5} {r['changed_on_second']:>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
