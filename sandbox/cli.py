"""`python -m sandbox up [N] [--lab NAME] [--release 11|12|13] [--backup-host]` /
`down [--lab NAME | --all]` /
`status`."""

from __future__ import annotations

import argparse
import sys
import time

from sandbox import hosts, image
from sandbox.run import SandboxError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="boot N disposable Debian hosts (12 unless --release)")
    p_up.add_argument("count", type=int, nargs="?", default=2)
    p_up.add_argument("--release", default=image.DEFAULT_RELEASE, choices=sorted(image.RELEASES),
                      help="Debian release of the hosts: 11, 12 or 13")
    p_up.add_argument("--lab", default="sbx")
    p_up.add_argument("--backup-host", action="store_true",
                      help="add a host `bk` in group backup (the pgBackRest repository host)")
    p_down = sub.add_parser("down", help="stop hosts and remove every trace")
    p_down.add_argument("--lab", default="sbx")
    p_down.add_argument("--all", action="store_true")
    p_left = sub.add_parser("leftovers", help="list traces of labs (exit 1 if any)")
    p_left.add_argument("--keep", action="append", default=[], help="a lab that may stay up")
    p_status = sub.add_parser("status", help="print the lab's inventory")
    p_status.add_argument("--lab", default="sbx")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            started = time.monotonic()
            specs = hosts.default_specs(args.count, args.release)
            if args.backup_host:
                specs.append(hosts.HostSpec("bk", ("backup",), args.release))
            lab = hosts.up(args.lab, specs)
            for h in lab.hosts:
                print(f"{h.name:16} {h.address:14} debian {h.release:3} "
                      f"{','.join(h.groups) or '-'}")
            print(f"{len(lab.hosts)} host(s) up in {time.monotonic() - started:.1f}s; "
                  f"inventory: {lab.inventory_file}")
        elif args.cmd == "leftovers":
            found = hosts.leftovers(set(args.keep))
            for item in found:
                print(f"left behind: {item}")
            if found:
                return 1
            print("no sandbox traces left" + (f" (kept: {', '.join(args.keep)})"
                                              if args.keep else ""))
        elif args.cmd == "down":
            hosts.down_all() if args.all else hosts.down(args.lab)
            print("sandbox down" + (" (all labs)" if args.all else f" (lab {args.lab})"))
        else:
            loaded = hosts.Lab.load(args.lab)
            if loaded is None:
                print(f"lab {args.lab} is not up")
                return 1
            for h in loaded.hosts:
                print(f"{h.name:16} {h.address:14} pid={h.pid} {','.join(h.groups) or '-'}")
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    return 0
