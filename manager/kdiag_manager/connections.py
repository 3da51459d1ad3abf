"""An accepted connection of a redirect, on its way to a tunnel or to its original destination.

The session that accepted it (``redirect.RedirectSession``) is reached through
:class:`ConnectionOwner`, so that what carries connections (tunnels, the pool of idle ones) need
not import the session. Routing a connection locally (fail-open, requests a header filter does
not match) is here too: :func:`route_local`.
"""

from __future__ import annotations

import itertools
import socket
import threading
from dataclasses import dataclass, field
from typing import Protocol

from . import conntrack, httpfilter, splice, sysutil
from .memory import LOAD
from .redirectspec import RedirectOptions
from .wire.sockets import abort, reset_on_close

HEAD_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0


class ConnectionOwner(Protocol):
    """What a connection's carriers use of the redirect session that accepted it."""

    options: RedirectOptions
    first_bytes: FirstBytesHint

    def fail_over(self, conn: Connection, reason: str) -> None:
        """A pooled tunnel could not carry ``conn``: original destination or reset."""

    def reoffer(self, conn: Connection, reason: str = "tunnel ended") -> None:
        """A pooled tunnel ended before its client took ``conn``: another one may."""

    def closed(self, conn: Connection, route: str, sent: int, received: int,
               error: str = "") -> None:
        """Report the end of a connection on the control stream."""


class FirstBytesHint:
    """Whether a redirect's peers speak first (HTTP, TLS: they do; SMTP, SSH: the server does),
    from the connections a tunnel waited on: while the last wait brought bytes, wait again;
    after one that did not, wait only on every ``RETRY_EVERY``-th connection (a server-first
    protocol pays the wait that rarely)."""

    RETRY_EVERY = 16

    def __init__(self) -> None:
        self._speaks_first = True
        self._skipped = 0

    def worth_waiting(self) -> bool:
        """Should a tunnel wait for the peer's first bytes?"""
        if self._speaks_first:
            return True
        self._skipped += 1
        return self._skipped % self.RETRY_EVERY == 0

    def record(self, got_bytes: bool) -> None:
        """What the last wait brought."""
        self._speaks_first = got_bytes


REOFFERS = 3
"""How often one connection may go to another tunnel after its tunnel ended (see reoffer)."""


@dataclass
class Connection:
    """An accepted connection waiting for (or carried by) a tunnel."""

    id: int
    sock: socket.socket
    original: tuple[str, int]
    peer: tuple[str, int]
    session: ConnectionOwner
    initial: bytes = b""
    state: str = "pending"  # pending -> tunnel | local | closed
    reject_reason: str = ""
    reoffers: int = 0  # times a tunnel ended before its client took it (see reoffer)
    forgotten: bool = False  # conntrack was told (see forget_reset)
    decided: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim_timeout(self) -> float:
        """How long the client may take to take (and connect) this connection."""
        return self.session.options.fail_open_timeout

    def reset(self) -> None:
        """Reset the connection now (RST) and have conntrack forget it at once."""
        abort(self.sock)
        if self.sock.family in (socket.AF_INET, socket.AF_INET6):
            self.forget_reset()

    def forget_reset(self) -> None:
        """It was reset: have conntrack forget it (:func:`conntrack.forget_reset`). A new
        connection from the same client port would otherwise follow this one's translation to
        the listener, maybe closed by then (refused), until the entry expires (10 s). Once:
        the path that reset it and the report of its end (``closed``) both ask."""
        if self.forgotten:
            return
        self.forgotten = True
        conntrack.forget_reset([(self.peer, self.original)])

    def transition(self, new: str) -> bool:
        """Move from pending to ``new``; False if someone else decided first."""
        with self.lock:
            if self.state != "pending":
                return False
            self.state = new
        self.decided.set()
        return True


class ConnectionRegistry:
    """Pending connections of every session, by id (ids are unique in the manager)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, Connection] = {}

    def next_id(self) -> int:
        """A fresh connection id."""
        return next(self._ids)

    def add(self, conn: Connection) -> None:
        """Make ``conn`` claimable."""
        with self._lock:
            self._pending[conn.id] = conn

    def remove(self, conn_id: int) -> Connection | None:
        """Forget a connection; return it if it was there."""
        with self._lock:
            return self._pending.pop(conn_id, None)

    def get(self, conn_id: int) -> Connection | None:
        """The pending connection ``conn_id``, if any."""
        with self._lock:
            return self._pending.get(conn_id)

    def claim(self, conn_id: int) -> Connection | None:
        """Hand a pending connection to a tunnel; None if it is unknown or already decided."""
        conn = self.remove(conn_id)
        if conn is None or not conn.transition("tunnel"):
            return None
        return conn


def read_head(conn: Connection) -> httpfilter.RequestHead | None:
    """Read the first request head into ``conn.initial`` (bounded in size and time)."""
    buf = b""
    conn.sock.settimeout(HEAD_TIMEOUT)
    try:
        while httpfilter.head_end(buf) < 0 and len(buf) < httpfilter.MAX_HEAD:
            data = conn.sock.recv(16384)
            if not data:
                break
            buf += data
            if not httpfilter.looks_like_http(buf):
                break
    except OSError:
        pass
    conn.sock.settimeout(None)
    conn.initial = buf
    return httpfilter.parse_head(buf)


def connect_original(conn: Connection) -> socket.socket:
    """A connection to ``conn``'s original destination, bypassing the rules (marked)."""
    family = socket.AF_INET6 if ":" in conn.original[0] else socket.AF_INET
    upstream = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sysutil.mark_socket(upstream)
        upstream.settimeout(CONNECT_TIMEOUT)
        upstream.connect(conn.original)
        upstream.settimeout(None)
        reset_on_close(upstream)  # (the app must not take a cut request for a whole one)
    except OSError:
        upstream.close()
        raise
    return upstream


def route_local(conn: Connection, route: str, reason: str) -> None:
    """Send ``conn`` to its original destination, bypassing the rules (marked socket)."""
    try:
        upstream = connect_original(conn)
    except OSError as exc:
        conn.reset()
        conn.session.closed(conn, "dropped", 0, 0, f"{reason}; original destination: {exc}".lstrip("; "))
        return
    with LOAD.pump():
        result = splice.splice(conn.sock, upstream, conn.initial)
    if result.reset:  # (the relay reset it)
        conn.forget_reset()
    conn.session.closed(conn, route, result.a_to_b, result.b_to_a, reason)
