"""The seed's "Agent Registration Flow" as a small API over PostgreSQLAdapter.

    client = AgentClient(db, "agent-7", agent_type="worker", config={"queue": "default"})
    await client.register()                    # agents row: state running, started_at, config
    await client.heartbeat({"queue": 3})       # agent_heartbeats row (+ cpu_usage), last_heartbeat
    client.record_metric("cpu_usage", 25.5)     # buffered; flush_metrics() sends a batch
    await client.flush_metrics()                # every buffered sample in one round trip
    await client.log_event("task_done", {"task": 42})
    await client.send_message("agent-8", "task", {"id": 42})
    for msg in await client.receive_messages(): ...
    req = await client.request_help("why is the queue stuck?", {"queue": "default"})
    await client.shutdown()                     # state stopped, stopped_at

Rows are written under the seed's column names (../shared/seed.txt: from_agent/to_agent/timestamp
of agent_communications, request_id/user_id/content of help_requests, response_id/content/
generated_at/agent_id of help_responses, conversation_id/tokens_used of llm_conversations,
metadata of performance_metrics), so that the seed's own queries read what this client writes.

Retries never duplicate a row: every row is inserted with a key chosen before the first attempt -
an id taken in advance from the table's own identity sequence (PostgreSQLAdapter.next_ids) and, for
the day-partitioned tables whose primary key is (timestamp, id), the client's timestamp; for help
requests and responses the seed's text key (request_id, response_id), a UUID - with ON CONFLICT
DO NOTHING. A retry after a lost connection sends the same key: if the first attempt
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
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from background_agents.coordination.postgresql_adapter import PostgreSQLAdapter, Row

log = logging.getLogger("background_agents.agent")

MAX_BUFFERED_METRICS = 10_000
PRIORITIES = ("low", "medium", "high")  # help_requests.priority, the seed's values

REGISTER_SQL = """
INSERT INTO agents (agent_id, name, type, state, config, metadata, started_at, stopped_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)
ON CONFLICT (agent_id) DO UPDATE
SET name = EXCLUDED.name, type = EXCLUDED.type, state = EXCLUDED.state,
    config = EXCLUDED.config, metadata = coalesce(agents.metadata, '{}') || EXCLUDED.metadata,
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
INSERT INTO performance_metrics (id, timestamp, agent_id, metric_name, value, unit, metadata)
SELECT m.id, m.ts, $3, m.name, m.value, m.unit, m.metadata
FROM unnest($1::bigint[], $2::timestamptz[], $4::text[], $5::float8[], $6::text[], $7::jsonb[])
     AS m (id, ts, name, value, unit, metadata)
ON CONFLICT DO NOTHING
"""

EVENT_SQL = """
INSERT INTO system_events (id, timestamp, event_type, severity, source, agent_id, event_data)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT DO NOTHING
"""

SEND_SQL = """
INSERT INTO agent_communications (id, from_agent, to_agent, message_type, content)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO NOTHING
"""

# Unprocessed messages: status 'sent' (the seed's default) or 'pending' (rows written before
# migration 0004); the inbox's partial index has this very predicate.
UNPROCESSED = "status IN ('sent', 'pending')"

# The oldest unprocessed messages for this agent that no other session holds, claimed in one
# statement; processed_at = $2 is this claim's token.
CLAIM_SQL = f"""
UPDATE agent_communications AS c
SET status = 'processed', processed_at = $2
FROM (SELECT id FROM agent_communications
      WHERE to_agent = $1 AND {UNPROCESSED}
      ORDER BY timestamp, id
      LIMIT $3
      FOR UPDATE SKIP LOCKED) AS p
WHERE c.id = p.id
RETURNING c.id, c.from_agent, c.to_agent, c.message_type, c.content, c.timestamp
"""

# A read first: most polls find nothing, and a claim is a write transaction (an xid, a commit
# record, a WAL flush) even when it claims nothing. Reads only the partial inbox index.
PEEK_SQL = f"""
SELECT EXISTS (SELECT 1 FROM agent_communications
               WHERE to_agent = $1 AND {UNPROCESSED}) AS pending
"""

CLAIMED_SQL = """
SELECT id, from_agent, to_agent, message_type, content, timestamp
FROM agent_communications
WHERE to_agent = $1 AND status = 'processed' AND processed_at = $2
"""

HELP_REQUEST_SQL = """
INSERT INTO help_requests (request_id, user_id, content, context, priority,
                           requesting_agent_id, request_type)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (request_id) DO NOTHING
"""

HELP_RESPONSE_SQL = """
WITH r AS (
    INSERT INTO help_responses (response_id, request_id, agent_id, content, confidence_score,
                                sources, response)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (response_id) DO NOTHING
)
UPDATE help_requests SET status = 'resolved', resolved_at = coalesce(resolved_at, now())
WHERE request_id = $2 AND $8::boolean AND status IS DISTINCT FROM 'resolved'
"""

# Highest priority first ('high' > 'medium' > 'low' > anything else: priority_rank, derived by
# the schema), oldest first within a priority.
PENDING_HELP_SQL = """
SELECT id, request_id, user_id, content, context, priority, requesting_agent_id, request_type,
       created_at
FROM help_requests
WHERE status = 'pending'
ORDER BY priority_rank DESC, created_at
LIMIT $1
"""

HELP_RESPONSES_SQL = """
SELECT id, response_id, request_id, agent_id, content, confidence_score, sources, response,
       generated_at
FROM help_responses WHERE request_id = $1 ORDER BY generated_at, id
"""

LLM_SQL = """
INSERT INTO llm_conversations (id, conversation_id, timestamp, agent_id, model, prompt, response,
                               tokens_used, tokens_input, tokens_output, cost, duration,
                               metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (id) DO NOTHING
"""

SET_STATE_SQL = "UPDATE agents SET state = $2 WHERE agent_id = $1"

SHUTDOWN_SQL = """
UPDATE agents SET state = $2, stopped_at = coalesce(stopped_at, $3)
WHERE agent_id = $1
"""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_key() -> str:
    """A text key chosen before the first attempt (request_id, response_id, conversation_id)."""
    return str(uuid.uuid4())


class CpuMeter:
    """This process's CPU use since the previous reading, in percent of one CPU (the seed's
    heartbeat metric `cpu_usage`, read as metrics->'cpu_usage')."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()

    def percent(self) -> float:
        cpu, wall = time.process_time(), time.monotonic()
        used, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        return round(100.0 * used / elapsed, 1) if elapsed > 0 else 0.0


@dataclass(frozen=True)
class MetricSample:
    name: str
    value: float | None  # NULL allowed, as in the seed
    timestamp: datetime
    unit: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Batch:
    samples: list[MetricSample]
    ids: list[int] | None = None  # assigned once, kept across retries


@dataclass(frozen=True)
class Message:
    id: int
    from_agent: str
    to_agent: str
    message_type: str
    content: Any
    timestamp: datetime

    @classmethod
    def from_row(cls, row: Row) -> Message:
        return cls(int(row["id"]), row["from_agent"], row["to_agent"], row["message_type"],
                   row["content"], row["timestamp"])


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
        self._cpu = CpuMeter()

    # --- lifecycle ---

    async def register(self, state: str = "running") -> None:
        """Upsert this agent's row: state, started_at = now, config; clears stopped_at."""
        self.started_at = utcnow()
        await self.db.execute_query(REGISTER_SQL, self.agent_id, self.name, self.agent_type,
                                    state, self.config, self.metadata, self.started_at,
                                    idempotent=True)
        self.state = state

    async def heartbeat(self, metrics: Mapping[str, Any] | None = None) -> None:
        """One heartbeat row (state, error_count, metrics JSON) and agents.last_heartbeat. The
        metrics get `cpu_usage` (this process's CPU % since the last heartbeat) unless given."""
        data = dict(metrics or {})
        data.setdefault("cpu_usage", self._cpu.percent())
        (hb_id,) = await self.db.next_ids("agent_heartbeats")
        await self.db.execute_query(HEARTBEAT_SQL, hb_id, utcnow(), self.agent_id, self.state,
                                    data, self.error_count, idempotent=True)

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

    def record_metric(self, name: str, value: float | None, unit: str | None = None,
                      metadata: Mapping[str, Any] | None = None) -> None:
        """Buffer one sample (timestamped now; value None is stored as NULL); flush_metrics()
        sends the buffer. When more than max_buffered_metrics wait (the database unreachable
        for long), the oldest are dropped and counted in metrics_dropped."""
        self._buffer.append(MetricSample(name, None if value is None else float(value), utcnow(),
                                         unit, dict(metadata or {})))
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
                [dict(m.metadata) for m in s], idempotent=True)
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

    async def send_message(self, to_agent: str, message_type: str,
                           content: Mapping[str, Any] | None = None) -> int:
        """Queue a message for `to_agent` (status 'sent', the seed's default); its id."""
        (msg_id,) = await self.db.next_ids("agent_communications")
        await self.db.execute_query(SEND_SQL, msg_id, self.agent_id, to_agent, message_type,
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
        """Claim up to `limit` unprocessed messages for this agent, oldest first (FOR UPDATE SKIP
        LOCKED: concurrent receivers never get the same message); they become 'processed'."""
        if not await self.db.fetchval(PEEK_SQL, self.agent_id):
            return []
        token = self._claim_token()

        async def recover() -> list[Row]:
            return await self.db.fetch(CLAIMED_SQL, self.agent_id, token)

        rows = await self.db.execute_claim(CLAIM_SQL, self.agent_id, token, limit,
                                           recover=recover)
        messages = [Message.from_row(r) for r in rows]
        messages.sort(key=lambda m: (m.timestamp, m.id))
        return messages

    # --- help requests ---

    async def request_help(self, content: str, context: Mapping[str, Any] | None = None, *,
                           priority: str = "medium", user_id: str | None = None,
                           request_type: str | None = None) -> str:
        """A pending help request (the seed's help_requests row: `content`, `priority` 'low',
        'medium' or 'high', `user_id` this agent unless given); its request_id."""
        if priority not in PRIORITIES:
            raise ValueError(f"priority = {priority!r}: expected one of {', '.join(PRIORITIES)}")
        request_id = new_key()
        await self.db.execute_query(HELP_REQUEST_SQL, request_id, user_id or self.agent_id,
                                    content, dict(context or {}), priority, self.agent_id,
                                    request_type, idempotent=True)
        return request_id

    async def pending_help_requests(self, limit: int = 10) -> list[Row]:
        return await self.db.fetch(PENDING_HELP_SQL, limit)

    async def respond_to_help(self, request_id: str, content: str, *,
                              confidence_score: float | None = None, sources: Any = None,
                              response: Mapping[str, Any] | None = None,
                              resolve: bool = True) -> str:
        """A response to a help request (and, by default, mark it resolved); its response_id."""
        response_id = new_key()
        await self.db.execute_query(
            HELP_RESPONSE_SQL, response_id, request_id, self.agent_id, content, confidence_score,
            None if sources is None else Jsonb(sources),  # any JSON value (a list of links...)
            None if response is None else dict(response), resolve, idempotent=True)
        return response_id

    async def help_responses(self, request_id: str) -> list[Row]:
        return await self.db.fetch(HELP_RESPONSES_SQL, request_id)

    # --- LLM conversations ---

    async def record_llm_conversation(
            self, model: str | None, prompt: str, response: str | None, *,
            conversation_id: str | None = None, tokens_used: int | None = None,
            tokens_input: int = 0, tokens_output: int = 0, cost: float | None = None,
            duration: float | None = None, metadata: Mapping[str, Any] | None = None) -> int:
        """One llm_conversations row (one model call; the calls of one conversation share its
        conversation_id, a new one unless given; tokens_used defaults to input + output;
        duration in seconds); the row's id."""
        (row_id,) = await self.db.next_ids("llm_conversations")
        used = tokens_input + tokens_output if tokens_used is None else tokens_used
        await self.db.execute_query(
            LLM_SQL, row_id, conversation_id or new_key(), utcnow(), self.agent_id, model, prompt,
            response, used, tokens_input, tokens_output, cost, duration,
            None if metadata is None else dict(metadata), idempotent=True)
        return row_id
