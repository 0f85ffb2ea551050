from __future__ import annotations

from deploy.runner import parse_results

# The tail of a real pyinfra 3.10 run (second deploy, then one with a change and an error).
TABLE = """
--> Results:
    Operation                                              Hosts   Success   Error   No Change
    Install and configure PostgreSQL | Write pg_hba.conf   1       -         -       1
    Install and configure PostgreSQL | Load kernel settings   1    1         -       -
    Create the database, roles and passwords | Create role x   2   -         1       1
    Grand total                                            3       1         1       2

--> Disconnecting from hosts...
"""


def test_parse_results_reads_changed_and_failed_operations() -> None:
    changed, errors, total = parse_results(TABLE)
    assert changed == ["Install and configure PostgreSQL | Load kernel settings"]
    assert errors == ["Create the database, roles and passwords | Create role x"]
    assert total == 3


def test_no_results_table_means_nothing_ran() -> None:
    assert parse_results("--> An internal exception occurred") == ([], [], 0)
