"""TCP_NODELAY on our SSH connections: pyinfra's (the deploy) and paramiko's (bgdb/remote.py:
the readiness checks and the operator commands).

Paramiko leaves Nagle's algorithm on: a command's small request packets wait for the ACK of the
previous segment, which the host delays (~40 ms on Linux), so every command and fact cost ~45 ms
of which ~3 were work (measured on the sandbox lab, 20 commands in a row over one connection:
44-49 ms each by default, 3 ms with TCP_NODELAY). A no-change deploy runs ~40 of them per host.
OpenSSH's client sets TCP_NODELAY for interactive sessions for the same reason.
"""

from __future__ import annotations

import socket
from typing import Any

from pyinfra import state
from pyinfra.connectors.ssh import SSHConnector


def set_nodelay(connector: Any) -> bool:
    """On a connected SSH connector's socket; False when there is none (a proxy channel)."""
    return client_nodelay(getattr(connector, "client", None))


def client_nodelay(client: Any) -> bool:
    """On a connected paramiko SSHClient's socket; False when there is none."""
    transport = client.get_transport() if client is not None else None
    sock = getattr(transport, "sock", None)
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET,
                                                                  socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


def _connect_nodelay(connect: Any) -> Any:
    def _connect(self: SSHConnector) -> None:
        connect(self)
        set_nodelay(self)

    return _connect


def install() -> None:
    """For connections made from now on and those pyinfra opened before the deploy file ran."""
    if not getattr(SSHConnector, "_bgdb_nodelay", False):
        SSHConnector._connect = _connect_nodelay(SSHConnector._connect)  # type: ignore[method-assign]
        SSHConnector._bgdb_nodelay = True  # type: ignore[attr-defined]
    for h in state.inventory:
        if h.connected and isinstance(h.connector, SSHConnector):
            set_nodelay(h.connector)
