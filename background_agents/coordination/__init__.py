"""The seed's import path: background_agents.coordination.postgresql_adapter."""

from __future__ import annotations

from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter

__all__ = ["PostgreSQLAdapter"]
