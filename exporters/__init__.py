"""Prometheus exporter for background-agents-db: agent health and database KPIs.

Runs on each database host with the distribution's python3, python3-psycopg and
python3-prometheus-client (no pip):
``python3 -m exporters --config /etc/bgdb-exporter/config.json`` (settings: exporters/config.py;
queries: exporters/queries.py and sql/exporter/*.sql; port 9847 by default).

Definitions the metrics rest on (the SQL files say the same next to each query):

* Availability: ``bgdb_up`` is 1 when the probe query (sql/exporter/server.sql) answered in this
  scrape; a database that refuses connections or stops answering gives 0 within
  statement_timeout + 2 s (connect: within connect_timeout, at least 2 s), and the endpoint keeps
  serving the exporter's own metrics. ``bgdb_pgbouncer_up`` likewise for PgBouncer.
* Missed heartbeats: ``floor(seconds since the last heartbeat / heartbeat_interval_seconds)``,
  the last heartbeat being the newer of agents.last_heartbeat and the newest agent_heartbeats
  row; agents in state stopped/terminated/shutdown are not expected to beat.
* Operation error rate (the seed's "> 5 %"): ``bgdb_operation_error_ratio`` = system_events rows
  with severity ERROR or CRITICAL / all system_events rows, over the last 5 minutes (agents
  record each operation's outcome as an event); 0 when there was no event.
* LLM tokens and cost by model are gauges over a sliding 5-minute window
  (``bgdb_llm_*_5m``), not counters: a counter would need a sum over the whole table at every
  scrape. Per hour: ``avg_over_time(bgdb_llm_tokens_5m[1h]) * 12``.
* Query latency: ``bgdb_statement_latency_seconds`` is a histogram of per-statement mean
  execution times between scrapes from pg_stat_statements; exporters/latency.py says exactly
  what its p95 covers and what it does not.
* Lock contention: ``bgdb_pg_lock_wait_ratio`` = client backends waiting on a heavyweight lock /
  client backends not idle.
* Sizes (``bgdb_pg_table_size_bytes``, ``bgdb_pg_database_size_bytes``) are measured at most
  every 300 s (``min_interval_seconds`` in exporters/queries.py); the scrapes in between serve the
  last measurement. Everything else is read at every scrape: the queries go to the server as one
  statement (exporters/collector.py says how a failing one is isolated), the per-agent search on
  a second connection beside it; the exporter takes one scrape at start, before it listens.
* Cardinality: per-agent series for at most ``max_agents`` agents (most overdue first) with
  totals beside them; tables, states, event types and models capped by ``top_tables`` /
  ``max_label_values``; the latency histogram has no labels.
"""

from __future__ import annotations
