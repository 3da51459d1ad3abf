"""A running redirect on the CLI's side: the control stream, pooled tunnels opened in advance,
and a socket to the operator-side address for each connection."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.channel import widen_send_buffers
from kdiag_manager.wire.sockets import reset, reset_on_close
from kdiag_manager.wire.workers import Workers

from kdiag.errors import ManagerError
from kdiag.lifeline import Lifeline

from .copies import CopyReceiver
from .grpcerrors import convert
from .pooledtunnel import PooledTunnel
from .results import ForwardTo, RedirectEventInfo, RedirectSpec
from .tunnel import ChannelClosed, TunnelStats, run_tunnel

log = logging.getLogger(__name__)

# Reused threads for tunnels: starting a thread per connection shows in setup latency.
_WORKERS = Workers("kdiag-tunnel")

REPLENISH_DELAY = 0.005


class Manager(Protocol):
    """What a redirect uses of its :class:`~kdiag.session.client.ManagerClient`."""

    unix_path: str

    @property
    def metadata(self) -> list[tuple[str, str]]:
        """The call metadata (the session token)."""

    def open_redirect(self, requests: Iterator[pb.RedirectRequest]) -> Any:
        """Start the Redirect call with ``requests``."""

    def tunnel(self) -> Any:
        """The Tunnel method for a new call."""


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return host.count(".") == 3


class RedirectHandle:
    """A running redirect. Background threads open a Tunnel for each new connection and join it
    to a socket connected to the operator-side address; connections the operator side refuses
    are rejected so the manager fails open. :meth:`close` ends it (the manager removes the
    rules); so does the channel dying."""

    def __init__(self, client: Manager, spec: RedirectSpec, forward_to: ForwardTo,
                 on_event: Callable[[RedirectEventInfo], None] | None,
                 connect_timeout: float, pool_size: int = 4) -> None:
        self.spec = spec
        self._client = client
        self._forward_to = forward_to
        self._on_event = on_event
        self._connect_timeout = connect_timeout
        self._requests: queue.SimpleQueue[pb.RedirectRequest | None] = queue.SimpleQueue()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.listen_port = 0
        self.rules: list[str] = []
        self.warnings: list[str] = []  # e.g. why IPv6 connections are not redirected
        self.session = ""
        self.connections = 0
        self.active = 0
        self.error: str = ""
        self._copies_error = ""  # (a mirror's copy stream failed: see _open_copies)
        self.closed_by_user = False
        self.lifeline = Lifeline()
        """Fails when the redirect ends without :meth:`close` (the manager or the connection
        to it is gone)."""
        self.redirect_id = 0
        self._raw_data = False  # the manager's tunnels accept raw data frames
        # Pooled tunnels: opened in advance, so a new connection costs no round trip.
        self._pool_size = pool_size
        self._idle_tunnels: set[PooledTunnel] = set()
        self._copies: CopyReceiver | None = None  # a mirror's copy stream

    # The request stream: spec, then rejections, until close().
    def _request_iter(self) -> Iterator[pb.RedirectRequest]:
        yield pb.RedirectRequest(spec=self.spec.to_pb())
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _start(self) -> None:
        self._call = self._client.open_redirect(self._request_iter())
        try:
            first = next(self._call)
        except grpc.RpcError as exc:
            raise convert(exc, "redirect") from None
        except StopIteration:
            raise ManagerError("redirect: the manager ended the stream at once") from None
        self.listen_port = first.ready.listen_port
        self.rules = list(first.ready.rules)
        self.warnings = list(first.ready.warnings)
        self.session = first.ready.session
        self.redirect_id = first.ready.redirect_id
        self._raw_data = first.ready.raw_data
        if self.spec.mirror:
            self._open_copies(first.ready.copy_stream)
        elif self._client.unix_path:  # tunnels will carry bulk data to the manager
            widen_send_buffers(self._client.unix_path, peer=True)
        threading.Thread(target=self._events, daemon=True, name="redirect-events").start()
        if self.redirect_id and not self.spec.mirror:
            for _ in range(self._pool_size):
                self._add_pooled()

    def _open_copies(self, offered: bool) -> None:
        """A mirror: its copies come on one stream (ManagerError if the manager has none)."""
        if not offered:
            self._requests.put(None)
            self._call.cancel()
            raise ManagerError("mirror: the manager is older than this kdiag (it sends no copy "
                               "stream); use a manager of the same version")

        def ended(error: str) -> None:
            if error and not self.closed_by_user:  # (the mirror cannot go on without it)
                # The cause unless the control stream ends with its own: the copy stream also
                # fails when the mirror ended first (NOT_FOUND), which would hide why.
                self._copies_error = f"the mirror's copy stream ended: {error}"
                self._requests.put(None)

        try:
            self._copies = CopyReceiver(self._client.tunnel(), self._client.metadata,
                                        self.redirect_id, self._target_for, self._emit,
                                        self._connect_timeout, ended)
        except ChannelClosed as exc:
            self._requests.put(None)
            raise convert(exc, "mirror") from None

    def _add_pooled(self) -> None:
        if self._done.is_set() or self.closed_by_user:
            return
        try:
            tunnel = PooledTunnel(self._client.tunnel(), self._client.metadata,
                                  self.redirect_id, keep_idle=self._pool_size,
                                  raw=self._raw_data)
        except ChannelClosed:  # the session is ending: the redirect with it
            return
        with self._lock:
            self._idle_tunnels.add(tunnel)
        _WORKERS.submit(self._run_pooled, tunnel)

    def _replenish(self) -> None:
        # Keep the pool full, but only once the connection that took a tunnel is under way:
        # opening a stream costs CPU (and the GIL) that its setup would otherwise wait for.
        # By then the tunnel may be back (reused after a short connection): then nothing to do.
        time.sleep(REPLENISH_DELAY)
        with self._lock:
            short = self._pool_short()
        if short:
            self._add_pooled()

    def _pool_short(self) -> bool:
        """Too few idle tunnels (call with the lock held)? One short of ``pool_size`` is fine:
        connections one at a time then never open new streams (the tunnel comes back when its
        connection ends, sometimes just after the next connection took another one)."""
        return len(self._idle_tunnels) < max(self._pool_size - 1, 1)

    def _run_pooled(self, tunnel: PooledTunnel) -> None:
        def info(c: pb.NewConnection) -> RedirectEventInfo:
            return RedirectEventInfo(
                "connection", c.connection_id,
                (c.original_destination.host, c.original_destination.port),
                (c.peer.host, c.peer.port))

        def connect(c: pb.NewConnection) -> socket.socket:
            sock = self._connect_operator(info(c))
            with self._lock:
                self.active += 1
                self._sockets.add(sock)
            return sock

        def on_assigned(c: pb.NewConnection) -> None:
            with self._lock:
                self._idle_tunnels.discard(tunnel)
                self.connections += 1
                short = self._pool_short()
            self._emit(info(c))  # before the manager can report it closed
            if short:
                _WORKERS.submit(self._replenish)

        def on_finished(c: pb.NewConnection, stats: TunnelStats,
                        sock: socket.socket | None) -> None:
            i = info(c)
            if sock is None:
                self._emit(RedirectEventInfo("rejected", i.connection_id, i.original, i.peer,
                                             error=stats.error))
                return
            with self._lock:
                self.active -= 1
                self._sockets.discard(sock)
                # Clean: the manager may park the stream for another connection (if it ends
                # it instead, run() returns and the tunnel leaves the idle set).
                if (not stats.reset and tunnel.connection_id == c.connection_id
                        and not tunnel.over):
                    self._idle_tunnels.add(tunnel)
            self._emit(RedirectEventInfo("tunnel-closed", i.connection_id, i.original, i.peer,
                                         "operator", stats.to_operator, stats.from_operator,
                                         stats.error))

        try:
            tunnel.run(on_assigned, connect, on_finished)
        finally:
            with self._lock:
                self._idle_tunnels.discard(tunnel)
                short = self._pool_short()
            # Tunnels that ended together (their lane closed) are replaced, on gRPC if the
            # lane is gone; one the manager ended because enough are idle is not.
            if short:
                _WORKERS.submit(self._replenish)

    def _connect_operator(self, info: RedirectEventInfo) -> socket.socket:
        """A socket connected to the operator-side address for ``info`` (OSError if not)."""
        assert info.original is not None
        try:
            host, port = self._target_for(info.original)
        except KeyError:
            raise OSError(f"no operator-side address for port {info.original[1]}") from None
        if _is_ipv4(host):  # the usual case: skip getaddrinfo
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(self._connect_timeout)
            try:
                sock.connect((host, port))
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((host, port), timeout=self._connect_timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reset_on_close(sock)  # (this process killed mid-request: a reset, never a clean end)
        return sock

    def _target_for(self, original: tuple[str, int]) -> tuple[str, int]:
        fwd = self._forward_to
        if callable(fwd):
            return fwd(original)
        if isinstance(fwd, dict):
            return fwd[original[1]]
        return fwd

    def _events(self) -> None:
        try:
            for ev in self._call:
                kind = ev.WhichOneof("msg")
                if kind == "connection":
                    c = ev.connection
                    info = RedirectEventInfo(
                        "connection", c.connection_id,
                        (c.original_destination.host, c.original_destination.port),
                        (c.peer.host, c.peer.port))
                    with self._lock:
                        self.connections += 1
                    self._emit(info)  # said before the operator side can answer it
                    _WORKERS.submit(self._serve, info)
                elif kind in ("closed", "closed_batch"):
                    for c2 in ev.closed_batch.closed if kind == "closed_batch" else [ev.closed]:
                        self._emit(RedirectEventInfo("closed", c2.connection_id, route=c2.route,
                                                     bytes_in=c2.bytes_from_peer,
                                                     bytes_out=c2.bytes_to_peer,
                                                     error=c2.error))
        except grpc.RpcError as exc:
            if not self.closed_by_user:
                self.error = self.error or f"{exc.code().name}: {exc.details()}"
        finally:
            self.error = self.error or self._copies_error
            self._done.set()
            if not self.closed_by_user:
                self.lifeline.fail(f"the redirect's stream to the manager ended "
                                   f"({self.error or 'closed by the manager'})")

    def _emit(self, info: RedirectEventInfo) -> None:
        if self._on_event is not None:
            try:
                self._on_event(info)
            except Exception:  # a reporter bug must not break the tunnels
                log.exception("redirect event callback failed")

    def _serve(self, info: RedirectEventInfo) -> None:
        try:
            sock = self._connect_operator(info)
        except OSError as exc:
            reason = f"operator side {self._describe_target(info)}: {exc}"
            self._requests.put(pb.RedirectRequest(reject=pb.RejectConnection(
                connection_id=info.connection_id, reason=reason)))
            self._emit(RedirectEventInfo("rejected", info.connection_id, info.original,
                                         info.peer, error=reason))
            return
        with self._lock:
            self.active += 1
            self._sockets.add(sock)
        stats = TunnelStats(info.connection_id)
        try:
            stats = run_tunnel(self._client.tunnel(), self._client.metadata, info.connection_id,
                               sock, self._raw_data)
        finally:
            with self._lock:
                self.active -= 1
                self._sockets.discard(sock)
            self._emit(RedirectEventInfo("tunnel-closed", info.connection_id, info.original,
                                         info.peer, "operator", stats.to_operator,
                                         stats.from_operator, stats.error))

    def _describe_target(self, info: RedirectEventInfo) -> str:
        try:
            host, port = self._target_for(info.original or ("", 0))
            return f"{host}:{port}"
        except Exception:
            return "(no mapping)"

    @property
    def running(self) -> bool:
        """Is the control stream still up?"""
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the redirect ends (closed, or the manager/channel went away)."""
        return self._done.wait(timeout)

    def close(self, abort_connections: bool = True, timeout: float = 5.0) -> None:
        """End the redirect: the manager removes its rules. Open tunnels are reset unless
        ``abort_connections`` is False (then they finish on their own)."""
        self.closed_by_user = True
        with self._lock:
            idle = list(self._idle_tunnels)
        for tunnel in idle:  # (the set may still hold one just assigned: it says so itself)
            tunnel.cancel_if_idle()
        self._requests.put(None)  # half-close: the manager stops the session
        started = time.monotonic()
        if not self._done.wait(timeout):
            self._call.cancel()
        if self._copies is not None:  # (the copies under way are delivered, or dropped)
            self._copies.finish(max(timeout - (time.monotonic() - started), 0.5))
        if abort_connections:
            with self._lock:
                socks = list(self._sockets)
            for s in socks:  # (a reset: a FIN would end a cut request as if it were whole)
                reset(s)

    def __enter__(self) -> RedirectHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
