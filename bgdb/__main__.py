from __future__ import annotations

from bgdb.cli import main

raise SystemExit(main())
