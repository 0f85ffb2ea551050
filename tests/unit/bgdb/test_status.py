"""`bgdb status` in HA mode: the Patroni cluster table."""

from __future__ import annotations

from bgdb import status


def test_cluster_rows_and_title_from_patronis_view() -> None:
    from rich.console import Console

    view = {"members": [
        {"name": "db1", "host": "10.0.0.1", "role": "leader", "state": "running", "timeline": 3},
        {"name": "db2", "host": "10.0.0.2", "role": "sync_standby", "state": "streaming",
         "timeline": 3, "lag": 0},
        {"name": "db3", "host": "10.0.0.3", "role": "replica", "state": "streaming",
         "timeline": 3, "lag": 4096}]}
    rows = status.cluster_rows(view)
    assert [(r["member"], r["role"], r["lag"]) for r in rows] == [
        ("db1", "leader", "-"), ("db2", "sync_standby", 0), ("db3", "replica", 4096)]
    console = Console(width=120, record=True)
    console.print(status.render_cluster(view))
    text = console.export_text()
    assert "synchronous standby: db2" in text and "4096" in text
    console.print(status.render_cluster(None))
    assert "no member answers" in console.export_text()
