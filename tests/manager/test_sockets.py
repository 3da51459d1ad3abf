"""Waiting for sockets without select(2)'s limit on descriptor numbers."""

from __future__ import annotations

import socket
import threading
import time

import pytest


def test_readable_waits_on_descriptors_above_1023() -> None:
    """poll(2), not select(2): a busy redirect has more than 1023 descriptors open."""
    import os
    import resource

    from kdiag_manager.wire.sockets import readable

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1100:
        pytest.skip("cannot open descriptors above 1023 here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
    a, b = socket.socketpair()
    high = socket.socket(fileno=os.dup2(b.fileno(), 1050))
    try:
        assert readable([high], 0) == []
        a.send(b"x")
        assert readable([high], 1) == [high]
        a.close()
    finally:
        high.close()
        b.close()


def _blocked_writer(sock: socket.socket) -> tuple[threading.Thread, list[BaseException]]:
    """A thread writing to ``sock`` until the call fails (the peer never reads)."""
    errors: list[BaseException] = []

    def write() -> None:
        try:
            sock.sendall(b"x" * (64 << 20))
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread, errors


def test_abort_resets_at_once_while_another_thread_is_blocked_writing() -> None:
    """A write blocked on a slow reader holds the socket open in the kernel: close() alone
    would send the reset only when that write returns (possibly after the connection's
    conntrack entry is gone, so the peer never sees it and waits forever). abort() must reset
    the connection now and wake the writer."""
    from kdiag_manager.wire.sockets import abort

    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.create_connection(server.getsockname())
        mine, _ = server.accept()
    with peer:
        writer, errors = _blocked_writer(mine)
        time.sleep(0.3)
        assert writer.is_alive(), "the write should be blocked: the peer reads nothing"
        abort(mine)
        writer.join(2)
        assert not writer.is_alive(), "abort() left the writer blocked"
        assert errors, "the blocked write should have failed"
        # The peer sees the reset before it has read what was already sent (at most the
        # socket buffers), not after draining everything the writer meant to send.
        peer.settimeout(2)
        received = 0
        with pytest.raises(ConnectionResetError):
            while data := peer.recv(1 << 20):
                received += len(data)
        assert received < (64 << 20)
