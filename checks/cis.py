"""The CIS PostgreSQL Benchmark controls that are the environment's call, not the bundle's: the
security section of `bgdb check` lists them as not applicable, each with why (the controls the
bundle covers are the checks in checks/test_security.py and the CIS-named ones beside it)."""

from __future__ import annotations

NOT_APPLICABLE: tuple[tuple[str, str], ...] = (
    ("CIS 1.1 packages from the PGDG repository",
     "the bundle installs Debian's own packages (security-supported by Debian) by design"),
    ("CIS 1.x WAL and data on separate disks",
     "a disk layout is the machine's: mount a volume at the data directory or pg_wal first"),
    ("CIS 6.x FIPS 140-2 OpenSSL",
     "Debian's OpenSSL has no FIPS-validated module; a FIPS build is the platform's choice"),
    ("CIS 8.x data anonymisation (anon extension)",
     "which agent payloads are personal data is the operator's decision; not in Debian"),
)
