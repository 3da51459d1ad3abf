"""A redirect session's start and its failed start, in-process (the rules stood in for): the
ready event names the redirect, its listener, rules and warnings, the warnings are logged; a
start whose rules cannot be installed leaves nothing behind (not registered, no descriptor
open); and a closed pool parks no tunnel any more."""

from __future__ import annotations

import logging
import os
import socket
import threading

import pytest
from kdiag_manager import redirect, redirectrules
from kdiag_manager.connections import ConnectionRegistry
from kdiag_manager.iptables import Iptables
from kdiag_manager.redirectrules import NFTABLES, RuleSet
from kdiag_manager.redirectspec import RedirectOptions
from kdiag_manager.tunnelpool import TunnelPool, TunnelWaiter

OPTIONS = RedirectOptions(incoming=True, ports=(8080,), session="unit")


class Rules(RuleSet):
    def _remove(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redirect, "_closing", False)  # (another test may have stopped all)


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_the_ready_event_names_the_redirect_and_its_warnings_are_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rules = Rules(NFTABLES, ["add rule x"], ["port 8080: IPv6 not redirected"])
    monkeypatch.setattr(redirectrules, "install", lambda *a: rules)
    session = redirect.RedirectSession(OPTIONS, Iptables(), ConnectionRegistry())
    with caplog.at_level(logging.WARNING):
        ready = session.start().ready
    try:
        assert redirect.session_by_id(session.id) is session
        assert (ready.redirect_id, ready.listen_port, list(ready.rules), list(ready.warnings),
                ready.mechanism, ready.session) == (
            session.id, session.listen_port, ["add rule x"], ["port 8080: IPv6 not redirected"],
            NFTABLES, "unit")
        assert ready.listen_port > 0
        assert f"redirect {session.id}: port 8080: IPv6 not redirected" in caplog.messages
    finally:
        session.stop()
    assert redirect.session_by_id(session.id) is None


def test_a_start_whose_rules_fail_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> RuleSet:
        raise redirectrules.RulesError("iptables: Permission denied")

    monkeypatch.setattr(redirectrules, "install", refuse)
    running = redirect.running()
    before = _fds()
    session = redirect.RedirectSession(OPTIONS, Iptables(), ConnectionRegistry())
    with pytest.raises(redirectrules.RulesError, match="Permission denied"):
        session.start()
    assert redirect.session_by_id(session.id) is None and redirect.running() == running
    assert session.stopped
    assert _fds() <= before  # the listener, the pool's epoll and waker sockets: all closed


def test_a_closed_pool_parks_no_tunnel() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        pool = TunnelPool(listener, direct=True)
        pool.close()
        got: list[object] = []
        waiter = TunnelWaiter()
        parked = threading.Thread(target=lambda: got.append(pool.park(
            waiter, lambda *a: None, lambda *a: None)), daemon=True)
        parked.start()
        parked.join(5)
        assert not parked.is_alive() and got == [None] and len(pool) == 0
        assert pool.loop_accept() is None
        pool.release()
        waiter.close()
