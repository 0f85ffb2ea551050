"""$n placeholders and read/write classification from a statement's text."""

from __future__ import annotations

import pytest

from background_agents.sqltext import SqlTextError, parse

SEED = "INSERT INTO performance_metrics (agent_id, metric_name, value) VALUES ($1, $2, $3)"


def test_seed_statement() -> None:
    stmt = parse(SEED)
    assert stmt.placeholders == {1, 2, 3}
    assert stmt.param_count == 3
    assert not stmt.is_read_only
    stmt.check_args(3)


@pytest.mark.parametrize(("text", "expected"), [
    ("SELECT $1, $2::int, $10", {1, 2, 10}),
    ("SELECT '$1', $2", {2}),                          # inside a string
    ("SELECT 'it''s $1', $2", {2}),                    # doubled quote
    ("SELECT E'\\'$1', $2", {2}),                      # backslash escape in E''
    ('SELECT "col$1", $2', {2}),                       # quoted identifier
    ("SELECT $$ $1 $$, $2", {2}),                      # dollar quote
    ("SELECT $fn$ $1 $fn$, $2", {2}),                  # tagged dollar quote
    ("SELECT 1 -- $1\n, $2", {2}),                     # line comment
    ("SELECT /* $1 /* $3 */ */ $2", {2}),              # nested block comment
    ("SELECT a$1 FROM t WHERE b = $1", {1}),           # $ inside an identifier
    ("SELECT 1", set()),
])
def test_placeholders_outside_literals_and_comments(text: str, expected: set[int]) -> None:
    assert parse(text).placeholders == expected


def test_argument_count_mismatch_is_explained() -> None:
    with pytest.raises(SqlTextError, match=r"no argument for \$3"):
        parse(SEED).check_args(2)
    with pytest.raises(SqlTextError, match=r"placeholder missing for argument \$4"):
        parse(SEED).check_args(4)
    with pytest.raises(SqlTextError, match=r"placeholder missing for argument \$1"):
        parse("SELECT $2").check_args(2)


@pytest.mark.parametrize(("text", "read_only"), [
    ("SELECT * FROM agents WHERE agent_id = $1", True),
    ("  -- leading comment\n select 1", True),
    ("VALUES (1)", True),
    ("TABLE agents", True),
    ("SHOW server_version", True),
    ("EXPLAIN SELECT 1", True),
    ("WITH a AS (SELECT 1) SELECT * FROM a", True),
    ("SELECT 'insert into x'", True),                  # keyword inside a literal
    ("SELECT updated_at FROM agents", True),           # keyword as part of a word
    (SEED, False),
    ("update agents set state = $1", False),
    ("DELETE FROM agents", False),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d", False),
    ("EXPLAIN ANALYZE DELETE FROM t", False),
    ("EXPLAIN (ANALYZE) INSERT INTO t VALUES (1)", False),
    ("SELECT * INTO new_table FROM agents", False),
    ("SELECT 1; SELECT 2", False),                     # two statements: not retried blindly
    ("CALL do_things()", False),
    ("REFRESH MATERIALIZED VIEW agent_health_summary", False),
])
def test_read_only_classification(text: str, read_only: bool) -> None:
    assert parse(text).is_read_only is read_only


@pytest.mark.parametrize("text", ["BEGIN", "commit", "ROLLBACK", "START TRANSACTION",
                                  "SAVEPOINT a", "/* x */ END"])
def test_transaction_control(text: str) -> None:
    assert parse(text).is_transaction_control


def test_statement_count_and_returning() -> None:
    assert parse("SELECT 1;").statements == 1
    assert parse("SELECT 1; ;").statements == 1
    assert parse("SELECT ';'; SELECT 2").statements == 2
    assert parse("INSERT INTO t VALUES (1) RETURNING id").returns_rows_on_write
    assert not parse("INSERT INTO t (returning_x) VALUES (1)").returns_rows_on_write
