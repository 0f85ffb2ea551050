"""Migration from the agents' old SQLite `shared_state.db` to PostgreSQL, in the seed's three steps:

    bgdb-setup-postgresql     (python -m bgdb.sqlite_migration.setup)    check the target, write
                                                                           the agents' env file
    bgdb-migrate-sqlite       (python -m bgdb.sqlite_migration.migrate)  back up, then copy the data
    bgdb-validate-migration   (python -m bgdb.sqlite_migration.validate) counts, checksums, samples

Modules: `mapping` (which SQLite table/column feeds which PostgreSQL one; the documented default
and override files), `convert` (loosely typed SQLite values -> PostgreSQL values), `source`
(the SQLite file: checks, backup, streaming by rowid), `target` (PostgreSQL: connection, the
migration ledger), `progress` (the progress line).
"""

from __future__ import annotations


class MigrationError(Exception):
    """A one-line, user-facing failure. exit_code 2: bad input (nothing was written);
    1: a failure while running (the last batch was rolled back; rerun to resume)."""

    exit_code = 2
