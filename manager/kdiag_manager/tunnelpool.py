"""A redirect's idle pooled tunnels, and which thread accepts its next connection.

A pooled tunnel's thread parks here until it carries a connection. Without a header filter,
the idle tunnels' threads accept on the redirect's listener themselves: each waits on an epoll
instance of its own where the listener is registered with ``EPOLLEXCLUSIVE``, so the kernel
wakes exactly one idle thread per new connection, and that thread sends the connection's
assignment itself: no hand-off between threads, and no other thread woken, on the connection's
critical path. The redirect's own accept loop accepts only while no tunnel is idle, and hands
what it accepts to a tunnel parked since (or announces it). With a header filter the loop
always accepts: the filter reads each request before anything is routed.

A parked thread also watches a wake-up socket pair of its own: handing it a connection and
cancelling it are one byte written.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connections import Connection

# What a parked tunnel does with a connection it accepted: make a Connection of it (None: not
# one of ours, it was closed), or offer it to others (it was handed another one meanwhile).
Adopt = Callable[[socket.socket, tuple[str, int]], "Connection | None"]
Offer = Callable[[socket.socket, tuple[str, int]], None]
Accepted = tuple[socket.socket, tuple[str, int]]  # (a connection off the listener, its peer)


class Waker:
    """A socket pair to wake one thread waiting in epoll."""

    def __init__(self) -> None:
        self.r, self._w = socket.socketpair()
        self.r.setblocking(False)
        self._w.setblocking(False)  # never blocks a thread holding a lock

    def wake(self) -> None:
        # Full (BlockingIOError): a wake-up is pending anyway. Closed: nobody waits any more.
        with contextlib.suppress(OSError):
            self._w.send(b"x")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while self.r.recv(64):
                pass

    def close(self) -> None:
        self.r.close()
        self._w.close()


class _Watch:
    """An epoll instance on a waker and (optionally) the listener, exclusively."""

    def __init__(self, waker: Waker, listener: socket.socket | None) -> None:
        self.waker = waker
        self.listener = listener
        self._epoll = select.epoll()
        self._epoll.register(waker.r, select.EPOLLIN)
        if listener is not None:
            self._epoll.register(listener, select.EPOLLIN | select.EPOLLEXCLUSIVE)

    def wait(self) -> bool:
        """Block until woken; True if the listener (may) have a connection."""
        try:
            ready = {fd for fd, _ in self._epoll.poll()}
        except (OSError, ValueError):  # closed under us: the pool is closing
            return False
        if self.waker.r.fileno() in ready:
            self.waker.drain()
        return self.listener is not None and self.listener.fileno() in ready

    def close(self) -> None:
        self._epoll.close()


class TunnelWaiter:
    """A pooled tunnel's thread, parked until it has a connection (re-armed for each one)."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.cancelled = False
        self._lock = threading.Lock()
        self.waker = Waker()
        self.watch: _Watch | None = None  # made by the pool on first use

    def rearm(self) -> bool:
        """Get ready for the next connection; False once cancelled."""
        with self._lock:
            self.conn = None
            return not self.cancelled

    def take(self, conn: Connection) -> bool:
        """Hand ``conn`` to this tunnel (False: cancelled, or it has one already)."""
        with self._lock:
            if self.cancelled or self.conn is not None:
                return False
            self.conn = conn
            conn.state = "tunnel"
        self.waker.wake()
        return True

    def cancel(self) -> None:
        """The tunnel's call ended: stop waiting."""
        with self._lock:
            self.cancelled = True
        self.waker.wake()

    def close(self) -> None:
        """Release the sockets (when the tunnel's call is over)."""
        if self.watch is not None:
            self.watch.close()
        self.waker.close()


class TunnelPool:
    """Idle pooled tunnels of one redirect (see the module's docstring)."""

    def __init__(self, listener: socket.socket | None, direct: bool,
                 accept: Callable[[], Accepted | None] | None = None) -> None:
        self._listener = listener  # non-blocking
        # How a connection is taken off the listener (the redirect's: it counts each one).
        self._accept_one = accept or (lambda: accept_from(listener))
        self._direct = direct
        self._idle: collections.deque[TunnelWaiter] = collections.deque()
        self._lock = threading.Lock()
        self._loop_turn = threading.Event()  # set: no tunnel is idle, the loop accepts
        self._loop_turn.set()
        self._loop_waker = Waker()
        self._loop_watch = _Watch(self._loop_waker, listener)
        self._closed = False

    def __len__(self) -> int:
        return len(self._idle)

    # -- pooled tunnels ----------------------------------------------------------------------

    def park(self, waiter: TunnelWaiter, adopt: Adopt, offer: Offer) -> Connection | None:
        """Wait until ``waiter`` has a connection: one it accepted, or one handed to it.
        None: cancelled or the pool closed."""
        if waiter.watch is None:
            waiter.watch = _Watch(waiter.waker, self._listener if self._direct else None)
        while True:
            with self._lock:
                if self._closed or not waiter.rearm():
                    return None
                self._idle.append(waiter)
                if self._direct and len(self._idle) == 1:
                    self._loop_turn.clear()  # the idle tunnels accept now
                    self._loop_waker.wake()
            conn = self._wait(waiter, waiter.watch, adopt, offer)
            if conn is not None or waiter.cancelled or self._closed:
                return conn

    def _wait(self, waiter: TunnelWaiter, watch: _Watch, adopt: Adopt, offer: Offer
              ) -> Connection | None:
        while True:
            if waiter.conn is not None:
                return waiter.conn
            if waiter.cancelled or self._closed:
                with self._lock:
                    self._leave(waiter)
                return None
            if not watch.wait():
                continue
            # Woken for the listener: accept even if leaving now, since the kernel woke only
            # this thread for the connection (what is not ours to carry is offered on).
            accepted = self._accept_one()
            if accepted is None:
                continue  # another thread took it
            with self._lock:
                # Handed another connection meanwhile, cancelled, or closing.
                elsewhere = waiter.conn is not None or waiter.cancelled or self._closed
                self._leave(waiter)
            if elsewhere:
                offer(*accepted)
                return waiter.conn
            conn = adopt(*accepted)
            if conn is not None:
                conn.state = "tunnel"
            return conn  # None: not ours (closed); park() puts the tunnel back

    def _leave(self, waiter: TunnelWaiter) -> None:
        """(Lock held.) ``waiter`` is no longer idle; with none left, the loop accepts."""
        with contextlib.suppress(ValueError):
            self._idle.remove(waiter)
        if not self._idle:
            self._loop_turn.set()

    # -- the redirect's accept loop ----------------------------------------------------------

    def hand(self, conn: Connection) -> bool:
        """Give ``conn`` to an idle tunnel (False: none is idle)."""
        with self._lock:
            while self._idle:
                waiter = self._idle[0]
                self._leave(waiter)
                if waiter.take(conn):
                    return True
        return False

    def loop_accept(self) -> tuple[socket.socket, tuple[str, int]] | None:
        """For the accept loop: wait for its turn (no idle tunnel accepting) and a
        connection; None to look again (woken, lost the race, or closed)."""
        self._loop_turn.wait()
        if self._closed or not self._loop_watch.wait():
            return None
        # Even if a tunnel parked meanwhile: the kernel woke only this thread for the
        # connection (the loop hands it over).
        return self._accept_one()

    def close(self) -> None:
        """Cancel every idle tunnel and release the loop (the redirect stops)."""
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), collections.deque()
        for waiter in idle:
            waiter.cancel()
        self._loop_turn.set()
        self._loop_waker.wake()

    def release(self) -> None:
        """Release the loop's sockets (after the loop has ended)."""
        self._loop_watch.close()
        self._loop_waker.close()


def accept_from(listener: socket.socket | None) -> Accepted | None:
    """A connection off ``listener`` (non-blocking) as a blocking socket and its peer; None
    when there is none (taken by another thread), or the listener is closed."""
    if listener is None:  # (a mirror's pool: its tunnels are only handed connections)
        return None
    try:
        sock, peer = listener.accept()
    except OSError:  # taken by another thread (EAGAIN), or closed: the redirect is stopping
        return None
    sock.setblocking(True)
    return sock, peer


def listen() -> tuple[socket.socket, bool]:
    """A listener on every address and a free port: dual-stack where IPv6 exists (True)."""
    flags = socket.SOCK_STREAM | socket.SOCK_CLOEXEC
    try:
        listener = socket.socket(socket.AF_INET6, flags)
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
        dual = True
    except OSError:  # no IPv6 in this namespace (or kernel)
        listener = socket.socket(socket.AF_INET, flags)
        listener.bind(("0.0.0.0", 0))
        dual = False
    listener.listen(1024)
    listener.setblocking(False)  # accepted by whichever thread epoll wakes (see the module)
    return listener, dual
