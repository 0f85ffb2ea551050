"""deploy/nodelay.py: Nagle is turned off on a connected TCP socket, and a connector without one
(not connected, or tunnelled through a proxy channel) is left alone."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from deploy.nodelay import set_nodelay


def _connector(sock: object) -> SimpleNamespace:
    transport = SimpleNamespace(sock=sock)
    return SimpleNamespace(client=SimpleNamespace(get_transport=lambda: transport))


def test_tcp_socket_gets_nodelay() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert set_nodelay(_connector(sock))
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_no_tcp_socket_is_left_alone() -> None:
    assert not set_nodelay(SimpleNamespace(client=None))
    assert not set_nodelay(_connector(object()))  # a paramiko Channel through a jump host
    a, b = socket.socketpair()
    with a, b:
        assert not set_nodelay(_connector(a))
