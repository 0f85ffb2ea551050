"""`python -m bgdb.sqlite_migration setup|migrate|validate ...`: the three steps, one entry."""

from __future__ import annotations

import sys

from bgdb.sqlite_migration import migrate, setup, validate

COMMANDS = {"setup": setup.main, "migrate": migrate.main, "validate": validate.main}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        print("usage: python -m bgdb.sqlite_migration {setup|migrate|validate} [--help]",
              file=sys.stderr)
        return 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
