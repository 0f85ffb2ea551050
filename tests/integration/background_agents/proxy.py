"""A loopback TCP proxy that can swallow a server's reply: the one network failure that
pg_terminate_backend cannot produce - the statement committed, the client never heard.

It forwards bytes both ways without looking at them (TLS passes through; connect with
`hostaddr=127.0.0.1 port=<proxy port>` and the real `host`, so verify-full still checks the
server's name). `blackhole()` makes every connection open at that moment drop whatever the server
sends from then on, and closes it `close_after` seconds later; connections opened afterwards are
not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    blackholed: bool = False


@dataclass
class Proxy:
    upstream_host: str
    upstream_port: int
    port: int = 0
    _server: asyncio.Server | None = None
    _links: list[_Link] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            link.client.close()
            link.server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def blackhole(self, close_after: float = 1.0) -> int:
        """Drop server->client data on every open connection; close them after a while."""
        links = [link for link in self._links if not link.blackholed]
        for link in links:
            link.blackholed = True
        task = asyncio.create_task(self._close_later(links, close_after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return len(links)

    async def _close_later(self, links: list[_Link], delay: float) -> None:
        await asyncio.sleep(delay)
        for link in links:
            link.client.close()
            link.server.close()

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        link = _Link(c_writer, s_writer)
        self._links.append(link)
        up = asyncio.create_task(self._pump(c_reader, s_writer, link, upstream=True))
        down = asyncio.create_task(self._pump(s_reader, c_writer, link, upstream=False))
        for t in (up, down):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, *,
                    upstream: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if not upstream and link.blackholed:
                    continue
                writer.write(data)
                await writer.drain()
        writer.close()
