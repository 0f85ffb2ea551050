from __future__ import annotations

from deploy.runner import failed_steps, parse_results

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


def test_failed_steps_names_the_operation_that_failed_not_the_ones_skipped_after() -> None:
    header = ("--> Starting operation: Configure WAL archiving and backups | Take the first full "
              "backup")
    output = header + """
    [repl-rep2] Skipped
    [repl-rep1] Error: ERROR: [058]: WAL timeline 2 does not match pg_control timeline 1
    [repl-rep1] Error: executed 0/1 commands

--> Starting operation: Configure replication on the primary | Set the password of x
    [repl-rep2] Skipped
""" + TABLE
    assert failed_steps(output).splitlines() == [
        header,
        "    [repl-rep1] Error: ERROR: [058]: WAL timeline 2 does not match pg_control timeline 1",
        "    [repl-rep1] Error: executed 0/1 commands"]
    assert failed_steps(TABLE) == "(no operation reported an error)"


def test_failed_steps_shows_what_the_host_printed_before_its_error() -> None:
    header = "--> Starting operation: Install PostgreSQL and tools"
    output = header + """
    [db2] Success
    [db1] E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 812
    [db1] Error: executed 0 commands
""" + TABLE
    assert failed_steps(output).splitlines() == [
        header,
        "    [db1] E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 812",
        "    [db1] Error: executed 0 commands"]
