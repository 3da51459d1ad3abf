"""The pool of idle pooled tunnels: idle threads accept by themselves, one per connection; the
accept loop only when none is idle; cancelling and closing release every parked thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kdiag_manager.tunnelpool import TunnelPool, TunnelWaiter


class _Conn:
    """Stands in for connections.Connection (the pool only sets ``state``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = "pending"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def _park(pool: TunnelPool, offered: list[Any]) -> tuple[TunnelWaiter, dict[str, Any]]:
    waiter = TunnelWaiter()
    out: dict[str, Any] = {}

    def run() -> None:
        out["conn"] = pool.park(waiter, lambda sock, peer: _Conn(sock),  # type: ignore[arg-type,return-value]
                                lambda sock, peer: offered.append(sock))
        out["thread"] = threading.current_thread().name

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    out["join"] = thread
    return waiter, out


def _until(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_one_idle_tunnel_accepts_each_connection(listener: socket.socket) -> None:
    pool = TunnelPool(listener, direct=True)
    offered: list[Any] = []
    parked = [_park(pool, offered) for _ in range(3)]
    _until(lambda: len(pool) == 3)
    client = socket.create_connection(listener.getsockname())
    _until(lambda: len(pool) == 2)
    time.sleep(0.2)  # the others stay parked: the kernel woke one
    done = [out for _, out in parked if "conn" in out]
    assert len(done) == 1 and done[0]["conn"].state == "tunnel"
    assert done[0]["conn"].sock.getpeername() == client.getsockname()
    assert not offered
    pool.close()
    for _, out in parked:
        out["join"].join(5)
    assert sum(out["conn"] is None for _, out in parked) == 2
    client.close()


def test_the_loop_accepts_when_no_tunnel_is_idle(listener: socket.socket) -> None:
    pool = TunnelPool(listener, direct=True)
    waiter, out = _park(pool, [])
    _until(lambda: len(pool) == 1)
    waiter.cancel()
    out["join"].join(5)
    assert out["conn"] is None and len(pool) == 0
    got: list[Any] = []

    def accept_loop() -> None:  # as the redirect's loop: None means look again
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            accepted = pool.loop_accept()
            if accepted is not None:
                got.append(accepted)

    loop = threading.Thread(target=accept_loop, daemon=True)
    loop.start()
    client = socket.create_connection(listener.getsockname())
    loop.join(5)
    assert got and got[0][0].getpeername() == client.getsockname()
    client.close()
    pool.close()
    pool.release()


def test_a_connection_handed_by_the_loop(listener: socket.socket) -> None:
    pool = TunnelPool(listener, direct=False)  # header filter: only the loop accepts
    waiter, out = _park(pool, [])
    _until(lambda: len(pool) == 1)
    a, b = socket.socketpair()
    assert pool.hand(_Conn(a))  # type: ignore[arg-type]
    out["join"].join(5)
    assert out["conn"].sock is a and len(pool) == 0
    assert not pool.hand(_Conn(b))  # type: ignore[arg-type]
    a.close()
    b.close()
    waiter.close()

