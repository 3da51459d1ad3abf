"""Redirect sessions: tagged iptables rules, a listener, and routing of each accepted connection.

One :class:`RedirectSession` per ``Redirect`` control stream. For each accepted connection the
session emits a ``connection`` event and waits for the client to claim it with a ``Tunnel``
stream. A connection nobody claims in time, or that the client rejects, goes to its original
destination when the spec says fail-open (else it is reset). With a header filter, each HTTP
request is routed on its own (``httprouter``): matching ones through a tunnel, the others to the
original destination. Rules are removed in :meth:`RedirectSession.stop`, which runs whenever
the control stream ends.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Iterator

from . import conntrack, httpfilter, redirectrules, sysutil
from .connections import (
    REOFFERS,
    Connection,
    ConnectionRegistry,
    FirstBytesHint,
    connect_original,
    read_head,
    route_local,
)
from .iptables import Iptables
from .memory import LOAD
from .redirectevents import outgoing
from .redirectrules import RuleSet
from .redirectspec import RedirectOptions
from .tunnelpool import Accepted, TunnelPool, TunnelWaiter, accept_from, listen
from .wire.api.v1 import manager_pb2 as pb
from .wire.sockets import abort, reset_on_close
from .wire.workers import Workers

log = logging.getLogger(__name__)


class RedirectSession:
    """The rules, listener and connections of one Redirect control stream."""

    mirrors = False
    """A mirror (``kdiag_manager.mirror.MirrorSession``): its copies come on a copy stream."""

    def __init__(self, options: RedirectOptions, iptables: Iptables,
                 registry: ConnectionRegistry) -> None:
        self.options = options
        self.iptables = iptables
        self.registry = registry
        self.events: queue.SimpleQueue[pb.RedirectEvent | None] = queue.SimpleQueue()
        self._rules: RuleSet | None = None
        self.listen_port = 0
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._mine: set[int] = set()
        # Every accepted (address-translated) socket still open: aborted when the manager exits.
        self._accepted_socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._intake_lock = threading.Lock()  # (see _take)
        self._intake_closed = False
        self._pool: TunnelPool | None = None
        self.first_bytes = FirstBytesHint()
        self.id = next(_session_ids)
        self.failure = ""
        """Why the session ended by itself (the control stream ends with this error)."""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> pb.RedirectEvent:
        """Listen, install the rules; return the ``ready`` event. Raises RulesError,
        IptablesError, OSError.

        One listener takes IPv4 and IPv6 (a dual-stack socket on every address: REDIRECT goes
        to the receiving interface's address, DNAT to loopback; DROP rules refuse connections
        that reach it without being redirected). The rules live in tables the kernel owns for
        this process where it can (see :mod:`redirectrules`), else in iptables.
        """
        opts = self.options
        with self._stop_lock:  # stop() (e.g. the manager exiting) waits for the rules
            register(self)
            listener, dual = listen()
            self._listener = listener
            self._pool = TunnelPool(listener, direct=opts.header is None, accept=self._take)
            self.listen_port = listener.getsockname()[1]
            _ports.add(self.listen_port)
            try:
                self._rules = redirectrules.install(
                    opts, self.listen_port, dual, self.iptables,
                    f"kdiag-{opts.session}-{os.getpid()}-{self.id}")
            except BaseException:
                self.unregister()
                listener.close()
                raise
        rules = self._rules
        for warning in rules.warnings:
            log.warning("redirect %s: %s", self.id, warning)
        threading.Thread(target=self._accept_loop, name="redirect-accept", daemon=True).start()
        return pb.RedirectEvent(ready=pb.RedirectReady(
            listen_port=self.listen_port, rules=rules.lines, session=opts.session,
            redirect_id=self.id, raw_data=True, warnings=rules.warnings,
            mechanism=rules.mechanism))

    @property
    def rules(self) -> list[str]:
        """The installed rules, as reported in the ready event."""
        return self._rules.lines if self._rules is not None else []

    def stop(self) -> None:
        """Remove the rules first (traffic reaches the app again), then stop accepting.

        Idempotent and completing: every caller returns only once the rules are gone (a
        second caller waits for the first), so the manager cannot exit half-way through.
        Called when the control stream ends for any reason, and for every session on the
        way out (:func:`stop_all`). Connections already established keep running until they
        end by themselves (their tunnel streams end with the client); connections still
        waiting for the client are routed as if rejected.
        """
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            if self._rules is not None:
                self._rules.remove()
            _active.discard(self)
            if self._pool is not None:
                self._pool.close()
            _by_id.pop(self.id, None)
            if self._listener is not None:
                self._drain_backlog()
            for conn_id in list(self._mine):
                conn = self.registry.get(conn_id)
                if conn is not None:
                    conn.reject_reason = "redirect ended"
                    conn.decided.set()
            if self._listener is not None:
                # Forget reset entries while the listener is open: a client port reused through
                # one reaches it (drained below), not a closed port (refused while sweeping, ≈ 0.5 s).
                conntrack.forget_translated({self.listen_port}, reset_only=True)
                self._drain_backlog()
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
            self.events.put(None)

    def _drain_backlog(self) -> None:
        """Take the connections queued for the listener that nobody accepted yet: they fail open
        (or are reset) like the others still waiting for the client. Closing the listener would
        reset them, and their conntrack entries send a client port reused soon after to it."""
        assert self._listener is not None
        while accepted := self._take():
            conn = self._new_connection(*accepted)
            if conn is not None:
                WORKERS.submit(self.fail_over, conn, "redirect ended")

    def _take(self) -> Accepted | None:
        """A connection off the listener, counted among those the manager's exit resets, in
        one step: one not yet counted at the last :meth:`abort_connections` would be closed by
        the process's end, untranslated, and its client wait for ever (seen in make chaos)."""
        with self._intake_lock:
            if self._intake_closed:
                return None
            accepted = accept_from(self._listener)
            if accepted is not None:
                self._accepted_socks.add(accepted[0])
                reset_on_close(accepted[0])  # (a clean end is the relay's: see wire.sockets)
            return accepted

    def open_connections(self) -> int:
        """How many connections this redirect accepted are still open."""
        return sum(sock.fileno() != -1 for sock in list(self._accepted_socks))

    def abort_connections(self, last: bool = False) -> list[conntrack.Flow]:
        """Reset every connection this redirect accepted that is still open (the manager is
        exiting: a reset, never a clean end that would pass for a complete answer); their
        flows (peer, original destination), for conntrack to forget once the resets are out.
        ``last``: no connection is taken from now on."""
        if last:
            with self._intake_lock:
                self._intake_closed = True
        flows = []
        for sock in list(self._accepted_socks):
            if sock.fileno() == -1:
                continue
            with contextlib.suppress(OSError):
                peer = sock.getpeername()
                flows.append(((sysutil.plain_address(peer[0]), peer[1]),
                              sysutil.original_destination(sock)))
            abort(sock)
        return flows

    @property
    def stopped(self) -> bool:
        """Has stop() run?"""
        return self._stopped.is_set()

    def unregister(self) -> None:
        """(Start failed, stop lock held.) Undo :func:`register` and release the pool."""
        self._stopped.set()
        _active.discard(self)
        _by_id.pop(self.id, None)
        if self._pool is not None:
            self._pool.close()
            self._pool.release()

    def outgoing_events(self, batch_closed: bool) -> Iterator[pb.RedirectEvent]:
        """The control stream's events until :meth:`stop` (see :func:`redirectevents.outgoing`:
        with ``batch_closed``, `closed` events go together)."""
        return outgoing(self.events, batch_closed)

    # -- control stream input ------------------------------------------------------------------

    def reject(self, conn_id: int, reason: str) -> None:
        """The client cannot take ``conn_id`` (its side refused): fail open or reset now."""
        conn = self.registry.get(conn_id)
        if conn is not None and conn.session is self:
            conn.reject_reason = reason or "rejected by client"
            conn.decided.set()

    def emit(self, event: pb.RedirectEvent) -> None:
        """Queue an event for the control stream (dropped once stopped)."""
        if not self.stopped:
            self.events.put(event)

    def closed(self, conn: Connection, route: str, sent: int, received: int,
               error: str = "") -> None:
        """Report the end of a connection on the control stream. One the manager reset
        (``error`` on the operator's route, or dropped) is forgotten by conntrack too."""
        self._mine.discard(conn.id)
        if error and route in ("operator", "dropped"):
            conn.forget_reset()
        self.emit(pb.RedirectEvent(closed=pb.ConnectionClosed(
            connection_id=conn.id, route=route, bytes_from_peer=sent, bytes_to_peer=received,
            error=error)))

    # -- connections ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        """Accept while no pooled tunnel is idle (an idle one accepts by itself)."""
        pool = self._pool
        assert pool is not None
        try:
            while not self.stopped:
                accepted = pool.loop_accept()
                if accepted is not None:
                    self._accepted(*accepted)
        finally:
            pool.release()

    def _accepted(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        if self.options.header is not None:
            WORKERS.submit(self._filter, sock, peer)  # reads the request: may block
        else:
            self._offer(sock, peer)  # never blocks: keeps connection setup fast

    def _new_connection(self, sock: socket.socket, peer: tuple[str, int]) -> Connection | None:
        try:
            original = sysutil.original_destination(sock)
        except OSError:
            sock.close()  # not redirected (cannot happen with the DROP rule): refuse
            return None
        return Connection(self.registry.next_id(), sock, original,
                          (sysutil.plain_address(peer[0]), peer[1]), self)

    def _filter(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        """Header filter: route each request of the connection by the header (per request).

        Matching requests travel in a tunnel of their own: one end of a socket pair takes the
        path of an accepted connection, the router talks HTTP on the other end. A connection
        that does not start with an HTTP/1.x request goes to the original destination.
        """
        conn = self._new_connection(sock, peer)
        if conn is None:
            return
        header = self.options.header
        assert header is not None
        if read_head(conn) is None:
            route_local(conn, "original", "")
            return

        def connect(name: str) -> socket.socket:
            if name == "app":
                return connect_original(conn)
            # (After stop() the pair's end fails open or is reset, like any unclaimed one.)
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self._offer_connection(Connection(self.registry.next_id(), theirs, conn.original,
                                              conn.peer, self))
            return mine

        from . import httprouter  # (loaded with the first header filter: not in an idle manager)

        with LOAD.pump():
            stats = httprouter.route(conn.sock, conn.initial, httpfilter.matcher(*header),
                                     connect)
        if stats.app_requests:
            self.closed(conn, "original", stats.from_peer, stats.to_peer, stats.error)

    def _offer(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        conn = self._new_connection(sock, peer)
        if conn is not None:
            self._offer_connection(conn)

    def _offer_connection(self, conn: Connection) -> None:
        if self._pool is not None and self._pool.hand(conn):
            return  # a pooled tunnel carries it: no event round trip, no stream setup
        self._announce(conn)
        WORKERS.submit(self._await_decision, conn)

    # -- pooled tunnels --------------------------------------------------------------------------

    def wait_for_connection(self, waiter: TunnelWaiter) -> Connection | None:
        """Park a pooled tunnel until it has a connection (None: redirect over or the waiter
        cancelled, i.e. the tunnel's call ended)."""
        if self.stopped or self._pool is None:
            return None
        conn = self._pool.park(waiter, self._new_connection, self._offer)
        if conn is not None:
            self._mine.add(conn.id)
        return conn

    def reoffer(self, conn: Connection, reason: str = "tunnel ended") -> None:
        """A pooled tunnel's call ended before its client took ``conn`` (a lane that went, a
        pool that shrank): route it afresh, at most ``REOFFERS`` times, then fail over."""
        if conn.reoffers >= REOFFERS:  # (once stopped, _await_decision fails it over at once)
            WORKERS.submit(self.fail_over, conn, reason)  # (it may relay: not on this thread)
            return
        conn.reoffers += 1
        self._mine.discard(conn.id)
        conn.state = "pending"
        self._offer_connection(conn)

    def idle_tunnels(self) -> int:
        """Pooled tunnels parked now (cancelled ones may count until a connection skips them)."""
        return len(self._pool) if self._pool is not None else 0

    def fail_over(self, conn: Connection, reason: str) -> None:
        """The client could not take ``conn``: original destination or reset."""
        if self.options.fail_open:
            route_local(conn, "original", reason)
        else:
            conn.reset()
            self.closed(conn, "dropped", 0, 0, reason)

    def _announce(self, conn: Connection) -> None:
        """Make ``conn`` claimable and tell the client about it."""
        self._mine.add(conn.id)
        self.registry.add(conn)
        self.emit(pb.RedirectEvent(connection=pb.NewConnection(
            connection_id=conn.id,
            original_destination=pb.Endpoint(host=conn.original[0], port=conn.original[1]),
            peer=pb.Endpoint(host=conn.peer[0], port=conn.peer[1]))))

    def _await_decision(self, conn: Connection) -> None:
        """Wait for a tunnel to claim ``conn``; otherwise fail open (or reset)."""
        if self.stopped:
            conn.reject_reason = "redirect ended"
        elif not conn.decided.wait(conn.claim_timeout()):
            conn.reject_reason = f"client did not take the connection in {conn.claim_timeout()}s"
        self.registry.remove(conn.id)
        if conn.transition("local"):  # (else a tunnel claimed it)
            self.fail_over(conn, conn.reject_reason)

EXIT_GRACE = 0.5
"""How long the manager's exit lets connections it failed over finish before it resets them."""

# Per-connection work (waiting for a tunnel, fail-open splices, tunnel pumps).
WORKERS = Workers("conn", max_idle=32)

# Sessions by redirect id, for pooled tunnels.
_session_ids = itertools.count(1)
_by_id: dict[int, RedirectSession] = {}
# Every session not yet garbage: a stopped one's connections may still run.
_sessions: weakref.WeakSet[RedirectSession] = weakref.WeakSet()


def _all_sessions() -> list[RedirectSession]:
    with _registry_lock:
        return list(_sessions)


def session_by_id(redirect_id: int) -> RedirectSession | None:
    """The running session ``redirect_id``, if any."""
    return _by_id.get(redirect_id)


# Every port a redirect listened on (conntrack may still translate connections to it).
_ports: set[int] = set()
# Every running session, so a terminating manager can remove all rules.
_active: set[RedirectSession] = set()
_closing = False
_registry_lock = threading.Lock()


def running() -> int:
    """How many redirects run now (their control streams open)."""
    with _registry_lock:
        return len(_active)


def register(session: RedirectSession) -> None:
    """Count ``session`` among the running ones (before it installs rules); OSError once the
    manager is on its way out (a rule installed now would outlive it)."""
    with _registry_lock:
        if _closing:
            raise OSError("the manager is stopping")
        _active.add(session)
        _sessions.add(session)
        _by_id[session.id] = session


def stop_all() -> None:
    """For the manager's exit: refuse later redirects, reset every connection a redirect
    accepted (while its translation holds, so the reset reaches the peer: iptables rules have no
    anchor), stop every session and return once all their rules are removed (also by another
    thread), let the connections failed over meanwhile finish (up to :data:`EXIT_GRACE`), reset
    what is left (the nftables anchor still translates it), and have conntrack forget them all
    (see :mod:`conntrack`)."""
    global _closing
    with _registry_lock:
        _closing = True
        sessions = list(_active)
    flows = [f for session in _all_sessions() for f in session.abort_connections()]
    for session in sessions:
        session.stop()
    # Connections accepted since (a client port reused through a stale entry, the last moments
    # before the rules went) failed over to the app: let them finish before the resets below.
    deadline = time.monotonic() + EXIT_GRACE
    while any(s.open_connections() for s in _all_sessions()) and time.monotonic() < deadline:
        time.sleep(0.01)
    flows += [f for session in _all_sessions() for f in session.abort_connections(last=True)]
    # At once (a client port reused now would be sent to a closed listener), then the rest.
    flows += conntrack.take_pending()
    if flows:
        conntrack.forget(flows)
        time.sleep(conntrack.RESET_DELAY)  # (resets sent late: see conntrack)
    # Any other entry still translated to a listener of ours (a connection reset on a path
    # that did not say so, or by this process's end) would refuse a reused client port.
    conntrack.forget_translated(set(_ports))
