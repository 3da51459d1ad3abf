"""Waiting for sockets without select(2)'s limit on descriptor numbers."""

from __future__ import annotations

import socket

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
