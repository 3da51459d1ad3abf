"""A redirect session's start and its failed start, in-process (the rules stood in for): the
ready event names the redirect, its listener, rules and warnings, the warnings are logged; a
start whose rules cannot be installed leaves nothing behind (not registered, no descriptor
open); and a closed pool parks no tunnel any more."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

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


class _Exiting:
    """A session on the manager's way out whose one connection, failed over during stop(), is
    relayed to the app for ``relay`` seconds (None: until reset)."""

    def __init__(self, relay: float | None) -> None:
        self.done = threading.Event()
        self.reset_at: float | None = None
        self.finished_at: float | None = None
        self._relay = relay

    def stop(self) -> None:
        threading.Thread(target=self._relayed, daemon=True).start()

    def _relayed(self) -> None:
        if not self.done.wait(self._relay):
            self.finished_at = time.monotonic()
            self.done.set()

    def open_connections(self) -> int:
        return 0 if self.done.is_set() else 1

    def abort_connections(self, last: bool = False) -> list:
        if last:
            self.reset_at = time.monotonic()
            self.done.set()
        return []


def _exit_with(monkeypatch: pytest.MonkeyPatch, session: _Exiting) -> float:
    monkeypatch.setattr(redirect, "_active", {session})
    monkeypatch.setattr(redirect, "_all_sessions", lambda: [session])
    for name in ("forget", "take_pending", "forget_translated"):
        monkeypatch.setattr(redirect.conntrack, name, lambda *a, **k: [])
    started = time.monotonic()
    redirect.stop_all()
    return started


def test_the_exit_lets_connections_failed_over_at_stop_finish(monkeypatch) -> None:
    """A connection taken in the last moments (the rules still up, or a client port reused
    through a stale entry) is failed over to the app when the redirect stops: the exit's resets
    wait for it instead of cutting it a millisecond later (make chaos: "a new connection after
    recovery did not reach the app: reset", 2 rounds in 300)."""
    session = _Exiting(relay=0.2)
    _exit_with(monkeypatch, session)
    assert session.finished_at is not None and session.reset_at is not None
    assert session.reset_at >= session.finished_at


def test_the_exit_resets_what_outlasts_its_grace(monkeypatch) -> None:
    """A failed-over connection that goes on (keep-alive) is reset after EXIT_GRACE: the exit
    stays bounded."""
    session = _Exiting(relay=None)
    started = _exit_with(monkeypatch, session)
    assert session.finished_at is None and session.reset_at is not None
    assert redirect.EXIT_GRACE <= session.reset_at - started < redirect.EXIT_GRACE + 2
