"""The agents' client library: PostgreSQLAdapter (async, pooled, retrying), the agent API and
BaseAgent. See README, "For agent authors"."""

from __future__ import annotations

from background_agents.agent_api import AgentClient, Message
from background_agents.base_agent import BaseAgent
from background_agents.config import AdapterConfig, ConfigError
from background_agents.coordination.postgresql_adapter import (
    PostgreSQLAdapter,
    ResultLost,
    WriteOutcomeUnknown,
)

__all__ = ["AdapterConfig", "AgentClient", "BaseAgent", "ConfigError", "Message",
           "PostgreSQLAdapter", "ResultLost", "WriteOutcomeUnknown"]
