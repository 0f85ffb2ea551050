"""pyinfra's own floor for bench/deploy_times.py: the same inventory and connections, one fact and
one operation per host (a file that exists after the first run, so the second changes nothing)."""

from __future__ import annotations

from pyinfra.operations import files

files.file(name="Touch the bench marker", path="/var/tmp/bgdb-bench-minimal", mode="644")
