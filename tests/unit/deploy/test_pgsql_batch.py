"""deploy/pgsql.PsqlBatch on plain psql output: answers per query, failures per query."""

from __future__ import annotations

from deploy.pgsql import _BATCH, _ERROR, _NO_SERVER, PsqlBatch

QUERIES = ("SELECT 1 FROM pg_roles WHERE rolname = 'a'", "SELECT broken", "SELECT 'x', 'y'")


def _fact() -> PsqlBatch:
    fact = PsqlBatch()
    fact.command(queries=QUERIES, database="app", port=5433)
    return fact


def test_each_query_gets_its_rows_and_a_failed_one_none() -> None:
    out = [f"{_BATCH} false", f"{_BATCH} true", "x\ty", f"{_BATCH} false"]
    assert _fact().process(out) == {QUERIES[0]: [], QUERIES[1]: None, QUERIES[2]: [["x", "y"]]}


def test_server_down_or_database_missing_answers_none_for_all() -> None:
    for marker in (_NO_SERVER, _ERROR):
        assert _fact().process([marker]) == dict.fromkeys(QUERIES)


def test_one_psql_for_all_queries_with_a_marker_after_each() -> None:
    cmd = PsqlBatch().command(queries=QUERIES, database="app", port=5433)
    assert cmd.count("psql ") == 1 and cmd.count(f"\\echo {_BATCH} :ERROR") == len(QUERIES)
    assert "-p 5433" in cmd and "-d app" in cmd
