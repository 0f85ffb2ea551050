"""Prometheus exporter for background-agents-db: agent health and database KPIs.

Runs on each database host with the distribution's python3, python3-psycopg and
python3-prometheus-client (no pip):
``python3 -m exporters --config /etc/bgdb-exporter/config.json``.
"""

from __future__ import annotations
