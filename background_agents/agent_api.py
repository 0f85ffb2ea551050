"""The seed's "Agent Registration Flow" as a small API over PostgreSQLAdapter.

    client = AgentClient(db, "agent-7", agent_type="worker", config={"queue": "default"})
    await client.register()                    # agents row: state running, started_at, config
    await client.heartbeat({"cpu_percent": 12}) # agent_heartbeats row + agents.last_heartbeat
    client.record_metric("cpu_usage", 25.5)     # buffered; flush_metrics() sends a batch
    await client.flush_metrics()                # every buffered sample in one round trip
    await client.log_event("task_done", {"task": 42})
    await client.send_message("agent-8", "task", {"id": 42})
    for msg in await client.receive_messages(): ...
    await client.shutdown()                     # state stopped, stopped_at

Retries never duplicate a row: every row is inserted with a key chosen before the first attempt -
an id taken in advance from the table's own identity sequence (PostgreSQLAdapter.next_ids) and, for
the day-partitioned tables whose primary key is (timestamp, id), the client's timestamp - with
ON CONFLICT DO NOTHING. A retry after a lost connection sends the same key: if the first attempt
committed, the retry inserts nothing. Updates set absolute values (state, GREATEST(last_heartbeat,
t), coalesce(stopped_at, t)), so repeating them changes nothing. A metrics batch that failed keeps
its ids and is sent again, unchanged, with the next flush. Receiving messages claims them with a
token (processed_at = a timestamp unique to this client), through the adapter's guarded write: a
claim that committed but whose reply was lost is found again by its token, so no message is
claimed and then dropped.

Timestamps of heartbeats, metrics, events and LLM records are the client's clock (UTC): keep
agents' clocks synchronised (NTP), as the health queries compare them with the server's now().
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter, Row

log = logging.getLogger("background_agents.agent")

MAX_BUFFERED_METRICS = 10_000

REGISTER_SQL = """
INSERT INTO agents (agent_id, name, type, state, config, metadata, started_at, stopped_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)
ON CONFLICT (agent_id) DO UPDATE
SET name = EXCLUDED.name, type = EXCLUDED.type, state = EXCLUDED.state,
    config = EXCLUDED.config, metadata = agents.metadata || EXCLUDED.metadata,
    started_at = EXCLUDED.started_at, stopped_at = NULL
"""

# One round trip: the heartbeat row and the agent's last_heartbeat/state. The row's key
# (timestamp, id) is chosen by the client; GREATEST keeps a late retry from moving time back.
HEARTBEAT_SQL = """
WITH hb AS (
    INSERT INTO agent_heartbeats (id, timestamp, agent_id, state, metrics, error_count)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT DO NOTHING
)
UPDATE agents SET last_heartbeat = GREATEST(last_heartbeat, $2), state = $4
WHERE agent_id = $3 AND stopped_at IS NULL
"""

METRICS_SQL = """
INSERT INTO performance_metrics (id, timestamp, agent_id, metric_name, value, unit, tags)
SELECT m.id, m.ts, $3, m.name, m.value, m.unit, m.tags
FROM unnest($1::bigint[], $2::timestamptz[], $4::text[], $5::float8[], $6::text[], $7::jsonb[])
     AS m (id, ts, name, value, unit, tags)
ON CONFLICT DO NOTHING
"""

EVENT_SQL = """
INSERT INTO system_events (id, timestamp, event_type, severity, source, agent_id, event_data)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING
"""

SEND_SQL = """
INSERT INTO agent_communications (id, sender_id, recipient_id, message_type, content)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO NOTHING
"""

# The oldest pending messages for this agent that no other session holds, claimed in one
# statement; processed_at = $2 is this claim's token.
CLAIM_SQL = """
UPDATE agent_communications AS c
SET status = 'processed', processed_at = $2
FROM (SELECT id FROM agent_communications
      WHERE recipient_id = $1 AND status = 'pending'
      ORDER BY created_at, id
      LIMIT $3
      FOR UPDATE SKIP LOCKED) AS p
WHERE c.id = p.id
RETURNING c.id, c.sender_id, c.recipient_id, c.message_type, c.content, c.created_at
"""

# A read first: most polls find nothing, and a claim is a write transaction (an xid, a commit
# record, a WAL flush) even when it claims nothing. Reads only the partial pending index.
PEEK_SQL = """
SELECT EXISTS (SELECT 1 FROM agent_communications
               WHERE recipient_id = $1 AND status = 'pending') AS pending
"""

CLAIMED_SQL = """
SELECT id, sender_id, recipient_id, message_type, content, created_at
FROM agent_communications
WHERE recipient_id = $1 AND status = 'processed' AND processed_at = $2
"""

HELP_REQUEST_SQL = """
INSERT INTO help_requests (id, requesting_agent_id, request_type, context, priority)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO NOTHING
"""

HELP_RESPONSE_SQL = """
WITH r AS (
    INSERT INTO help_responses (id, request_id, responding_agent_id, response)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO NOTHING
)
UPDATE help_requests SET status = 'resolved', resolved_at = coalesce(resolved_at, now())
WHERE id = $2 AND $5::boolean AND status <> 'resolved'
"""

PENDING_HELP_SQL = """
SELECT id, requesting_agent_id, request_type, context, priority, created_at
FROM help_requests
WHERE status = 'pending'
ORDER BY priority DESC, created_at
LIMIT $1
"""

HELP_RESPONSES_SQL = """
SELECT id, request_id, responding_agent_id, response, created_at
FROM help_responses WHERE request_id = $1 ORDER BY id
"""

LLM_SQL = """
INSERT INTO llm_conversations (id, timestamp, agent_id, model, prompt, response, tokens_input,
                               tokens_output, cost, duration)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (id) DO NOTHING
"""

SET_STATE_SQL = "UPDATE agents SET state = $2 WHERE agent_id = $1"

SHUTDOWN_SQL = """
UPDATE agents SET state = $2, stopped_at = coalesce(stopped_at, $3)
WHERE agent_id = $1
"""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class MetricSample:
    name: str
    value: float
    timestamp: datetime
    unit: str | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Batch:
    samples: list[MetricSample]
    ids: list[int] | None = None  # assigned once, kept across retries


@dataclass(frozen=True)
class Message:
    id: int
    sender_id: str | None
    recipient_id: str | None
    message_type: str
    content: Any
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Message:
        return cls(int(row["id"]), row["sender_id"], row["recipient_id"], row["message_type"],
                   row["content"], row["created_at"])


class AgentClient:
    """One agent's writes and reads; safe to retry, see the module docstring."""

    def __init__(self, db: PostgreSQLAdapter, agent_id: str, *, name: str | None = None,
                 agent_type: str = "generic", config: Mapping[str, Any] | None = None,
                 metadata: Mapping[str, Any] | None = None,
                 max_buffered_metrics: int = MAX_BUFFERED_METRICS) -> None:
        if not agent_id:
            raise ValueError("agent_id must not be empty")
        self.db = db
        self.agent_id = agent_id
        self.name = name or agent_id
        self.agent_type = agent_type
        self.config = dict(config or {})
        self.metadata = dict(metadata or {})
        self.state = "initializing"
        self.error_count = 0
        self.started_at: datetime | None = None
        self.max_buffered_metrics = max_buffered_metrics
        self.metrics_dropped = 0  # samples dropped because the buffer was full
        self._buffer: list[MetricSample] = []
        self._unsent: list[_Batch] = []
        self._last_claim: datetime | None = None

    # --- lifecycle ---

    async def register(self, state: str = "running") -> None:
        """Upsert this agent's row: state, started_at = now, config; clears stopped_at."""
        self.started_at = utcnow()
        await self.db.execute_query(REGISTER_SQL, self.agent_id, self.name, self.agent_type,
                                    state, self.config, self.metadata, self.started_at,
                                    idempotent=True)
        self.state = state

    async def heartbeat(self, metrics: Mapping[str, Any] | None = None) -> None:
        """One heartbeat row (state, error_count, metrics JSON) and agents.last_heartbeat."""
        (hb_id,) = await self.db.next_ids("agent_heartbeats")
        await self.db.execute_query(HEARTBEAT_SQL, hb_id, utcnow(), self.agent_id, self.state,
                                    dict(metrics or {}), self.error_count, idempotent=True)

    async def set_state(self, state: str) -> None:
        await self.db.execute_query(SET_STATE_SQL, self.agent_id, state, idempotent=True)
        self.state = state

    async def shutdown(self, state: str = "stopped") -> None:
        """Flush buffered metrics (best effort), then state = stopped, stopped_at = now."""
        try:
            await self.flush_metrics()
        except Exception as exc:  # the state change matters more than the last samples
            log.warning("%s: metrics not flushed at shutdown: %s", self.agent_id, exc)
        await self.db.execute_query(SHUTDOWN_SQL, self.agent_id, state, utcnow(),
                                    idempotent=True)
        self.state = state

    # --- performance metrics ---

    def record_metric(self, name: str, value: float, unit: str | None = None,
                      tags: Mapping[str, Any] | None = None) -> None:
        """Buffer one sample (timestamped now); flush_metrics() sends the buffer. When more than
        max_buffered_metrics wait (the database unreachable for long), the oldest are dropped
        and counted in metrics_dropped."""
        self._buffer.append(MetricSample(name, float(value), utcnow(), unit, dict(tags or {})))
        overflow = self.pending_metrics - self.max_buffered_metrics
        if overflow > 0:
            self._drop_oldest(overflow)

    @property
    def pending_metrics(self) -> int:
        return len(self._buffer) + sum(len(b.samples) for b in self._unsent)

    def _drop_oldest(self, count: int) -> None:
        while count > 0 and self._unsent:
            batch = self._unsent[0]
            take = min(count, len(batch.samples))
            del batch.samples[:take]
            if batch.ids is not None:
                del batch.ids[:take]
            if not batch.samples:
                self._unsent.pop(0)
            count -= take
            self.metrics_dropped += take
        if count > 0:
            del self._buffer[:count]
            self.metrics_dropped += count

    async def flush_metrics(self) -> int:
        """Send every buffered sample, one round trip per batch; the number of samples sent.
        A batch that fails stays queued with its ids and is re-sent by the next flush."""
        if self._buffer:
            self._unsent.append(_Batch(self._buffer))
            self._buffer = []
        sent = 0
        while self._unsent:
            batch = self._unsent[0]
            if batch.ids is None:
                batch.ids = await self.db.next_ids("performance_metrics", len(batch.samples))
            s = batch.samples
            await self.db.execute_query(
                METRICS_SQL, batch.ids, [m.timestamp for m in s], self.agent_id,
                [m.name for m in s], [m.value for m in s], [m.unit for m in s],
                [dict(m.tags) for m in s], idempotent=True)
            self._unsent.pop(0)
            sent += len(s)
        return sent

    # --- events ---

    async def log_event(self, event_type: str, data: Mapping[str, Any] | None = None, *,
                        severity: str = "INFO", source: str | None = None) -> int:
        """One system_events row; its id."""
        (event_id,) = await self.db.next_ids("system_events")
        await self.db.execute_query(EVENT_SQL, event_id, utcnow(), event_type, severity,
                                    source or self.agent_type, self.agent_id, dict(data or {}),
                                    idempotent=True)
        return event_id

    # --- messages ---

    async def send_message(self, recipient_id: str | None, message_type: str,
                           content: Mapping[str, Any] | None = None) -> int:
        """Queue a message for `recipient_id` (status pending); its id."""
        (msg_id,) = await self.db.next_ids("agent_communications")
        await self.db.execute_query(SEND_SQL, msg_id, self.agent_id, recipient_id, message_type,
                                    dict(content or {}), idempotent=True)
        return msg_id

    def _claim_token(self) -> datetime:
        # Strictly increasing per client, so that two claims never share a token.
        now = utcnow()
        if self._last_claim is not None and now <= self._last_claim:
            now = self._last_claim + timedelta(microseconds=1)
        self._last_claim = now
        return now

    async def receive_messages(self, limit: int = 10) -> list[Message]:
        """Claim up to `limit` pending messages for this agent, oldest first (FOR UPDATE SKIP
        LOCKED: concurrent receivers never get the same message); they become 'processed'."""
        if not await self.db.fetchval(PEEK_SQL, self.agent_id):
            return []
        token = self._claim_token()

        async def recover() -> list[Row]:
            return await self.db.fetch(CLAIMED_SQL, self.agent_id, token)

        rows = await self.db.execute_claim(CLAIM_SQL, self.agent_id, token, limit,
                                           recover=recover)
        messages = [Message.from_row(r) for r in rows]
        messages.sort(key=lambda m: (m.created_at, m.id))
        return messages

    # --- help requests ---

    async def request_help(self, request_type: str, context: Mapping[str, Any] | None = None,
                           priority: int = 5) -> int:
        """A pending help request; its id."""
        (req_id,) = await self.db.next_ids("help_requests")
        await self.db.execute_query(HELP_REQUEST_SQL, req_id, self.agent_id, request_type,
                                    dict(context or {}), priority, idempotent=True)
        return req_id

    async def pending_help_requests(self, limit: int = 10) -> list[Row]:
        return await self.db.fetch(PENDING_HELP_SQL, limit)

    async def respond_to_help(self, request_id: int, response: Mapping[str, Any], *,
                              resolve: bool = True) -> int:
        """A response to a help request (and, by default, mark it resolved); the response id."""
        (resp_id,) = await self.db.next_ids("help_responses")
        await self.db.execute_query(HELP_RESPONSE_SQL, resp_id, request_id, self.agent_id,
                                    dict(response), resolve, idempotent=True)
        return resp_id

    async def help_responses(self, request_id: int) -> list[Row]:
        return await self.db.fetch(HELP_RESPONSES_SQL, request_id)

    # --- LLM conversations ---

    async def record_llm_conversation(self, model: str, prompt: str | None,
                                      response: str | None, *, tokens_input: int = 0,
                                      tokens_output: int = 0, cost: float = 0.0,
                                      duration: float | None = None) -> int:
        """One llm_conversations row (duration in seconds); its id."""
        (conv_id,) = await self.db.next_ids("llm_conversations")
        await self.db.execute_query(LLM_SQL, conv_id, utcnow(), self.agent_id, model, prompt,
                                    response, tokens_input, tokens_output, cost, duration,
                                    idempotent=True)
        return conv_id
