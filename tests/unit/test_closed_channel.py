"""Tunnels asked for after the session closed its gRPC channel (a pod deleted while a
connection comes in, or while the redirect refills its pool): gRPC raises ValueError at the
call; kdiag must end that connection or pooled tunnel quietly, never print a traceback.
(Seen in CI: ``kdiag redirect`` ended with "ValueError: Cannot invoke RPC: Channel closed!".)"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any

import grpc
import pytest

from kdiag.errors import ManagerError
from kdiag.session.pooledtunnel import PooledTunnel
from kdiag.session.redirect import RedirectHandle
from kdiag.session.results import RedirectSpec
from kdiag.session.tunnel import ChannelClosed, run_tunnel, tunnel_method


@pytest.fixture
def closed_method() -> Any:
    channel = grpc.insecure_channel("unix:/nonexistent/kdiag-test.sock")
    method = tunnel_method(channel)  # (as the session does: made while the channel is open)
    channel.close()
    return method


def test_a_connection_on_a_closed_channel_is_reset_and_its_socket_closed(closed_method: Any
                                                                         ) -> None:
    ours, operator = socket.socketpair()
    with operator:
        stats = run_tunnel(closed_method, [], 7, ours)
        assert stats.reset and stats.connection_id == 7
        assert stats.error == "the channel to the manager is closed"
        assert ours.fileno() == -1  # closed, as run_tunnel promises
        operator.settimeout(2)
        with contextlib.suppress(ConnectionResetError):  # (aborted: as good as an end here)
            assert operator.recv(1) == b""


def test_a_pooled_tunnel_on_a_closed_channel_is_an_rpc_error(closed_method: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        PooledTunnel(closed_method, [], redirect_id=1)
    assert isinstance(raised.value, ChannelClosed)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


class _ClosedManager:
    """A session whose channel is closed: what a redirect uses of it."""

    unix_path = ""

    def __init__(self, method: Any) -> None:
        self._method = method

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return []

    def open_redirect(self, requests: Any) -> Any:
        raise AssertionError("not used here")

    def tunnel(self) -> Any:
        return self._method


def _handle(method: Any, mirror: bool = False) -> RedirectHandle:
    spec = RedirectSpec("incoming", [8080], mirror=mirror)
    handle = RedirectHandle(_ClosedManager(method), spec, ("127.0.0.1", 9), None, 1.0)
    handle.redirect_id = 3
    return handle


def test_refilling_the_pool_after_the_channel_closed_adds_nothing_and_logs_nothing(
        closed_method: Any, caplog: pytest.LogCaptureFixture) -> None:
    handle = _handle(closed_method)
    with caplog.at_level(logging.DEBUG):
        handle._add_pooled()
    assert not handle._idle_tunnels
    assert not caplog.records


def test_a_mirror_whose_channel_closed_at_its_start_is_a_manager_error(closed_method: Any
                                                                        ) -> None:
    handle = _handle(closed_method, mirror=True)
    with pytest.raises(ManagerError, match="mirror: the channel to the manager is closed"):
        handle._open_copies(offered=True)
    assert handle._requests.get_nowait() is None  # the redirect's request stream is ended
