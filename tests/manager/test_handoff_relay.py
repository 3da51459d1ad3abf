"""The manager's kernel relay (``handoff.relay``) with real TCP sockets: a reset is passed on as
a reset, also when the error of it was taken by the other direction's call and this one reads
0 from the reset socket (which looks like a clean end)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from kdiag_manager.handoff import Relayed, relay
from kdiag_manager.wire.sockets import reset, was_reset


def _pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair (the far end, the relay's end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        far = socket.create_connection(listener.getsockname(), timeout=5)
        near, _ = listener.accept()
    far.settimeout(5)
    return far, near


def _submit(fn: Callable[..., Any], *args: Any) -> None:
    threading.Thread(target=fn, args=args, daemon=True).start()


def test_a_reset_peer_reaches_the_operator_side_as_a_reset_not_as_an_end() -> None:
    client, peer = _pair()
    served, operator = _pair()
    reset(peer)
    with pytest.raises(ConnectionResetError):  # (another call takes the reset's error)
        peer.recv(1)
    assert peer.recv(1) == b""  # what the relay reads now: a clean end, to the eye
    ended: list[Relayed] = []
    runs = threading.Thread(target=lambda: ended.append(relay(peer, operator, b"", _submit)))
    runs.start()
    with pytest.raises(ConnectionResetError):
        served.recv(1)  # (a clean end would return b"": a cut request passed for a whole)
    runs.join(5)
    assert ended and ended[0].error == "connection reset: Connection reset by peer"
    for sock in (client, peer, served, operator):
        sock.close()


def test_was_reset_tells_a_reset_from_a_peer_s_end() -> None:
    far, near = _pair()
    far.shutdown(socket.SHUT_WR)
    assert near.recv(1) == b""
    assert not was_reset(near)  # (CLOSE_WAIT: the peer ended cleanly)
    reset(near)
    assert was_reset(near)
    a, b = socket.socketpair()
    assert not was_reset(a)  # (not TCP: never)
    for sock in (far, near, a, b):
        sock.close()
