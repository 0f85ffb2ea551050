"""The client-side watchdog that unblocks a read from a server that stopped answering."""

from __future__ import annotations

import socket
import time

from exporters.connection import Watchdog


def test_a_blocked_read_is_woken_at_the_deadline() -> None:
    dog = Watchdog("test")
    a, b = socket.socketpair()
    try:
        started = time.monotonic()
        with dog.guard(a.fileno(), 0.2):
            data = a.recv(1)  # the peer never writes: only the watchdog ends this
        assert data == b""
        assert dog.fired
        assert 0.15 < time.monotonic() - started < 2
    finally:
        a.close()
        b.close()
        dog.stop()


def test_a_block_that_ends_in_time_is_left_alone() -> None:
    dog = Watchdog("test")
    a, b = socket.socketpair()
    try:
        with dog.guard(a.fileno(), 0.3):
            b.sendall(b"x")
            assert a.recv(1) == b"x"
        time.sleep(0.5)  # past the deadline, outside the guard
        assert not dog.fired
        b.sendall(b"y")
        assert a.recv(1) == b"y"  # the socket still works
    finally:
        a.close()
        b.close()
        dog.stop()
