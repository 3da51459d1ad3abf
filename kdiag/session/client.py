"""ManagerClient: typed calls to a kdiag manager over one gRPC channel.

Every call carries the session token. gRPC errors become :class:`ManagerError` (a step failed,
exit 1) or :class:`ManagerUnavailable` (the manager cannot be reached, exit 3).
"""

from __future__ import annotations

import contextlib
import json as _json
import logging
import os
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import grpc
from kdiag_manager.wire import grpccore
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.api.v1 import manager_pb2_grpc as pb_grpc
from kdiag_manager.wire.channel import TRANSPORT_OPTIONS, widen_send_buffers
from kdiag_manager.wire.workers import Workers

from kdiag.errors import ManagerError, ManagerUnavailable

from .lane import LaneClient, connect_socket
from .tunnel import PooledTunnel, TunnelStats, run_tunnel, tunnel_method

log = logging.getLogger(__name__)

# Reused threads for tunnels: starting a thread per connection shows in setup latency.
_WORKERS = Workers("kdiag-tunnel")

CHUNK = 64 * 1024
REPLENISH_DELAY = 0.005
CHANNEL_OPTIONS = TRANSPORT_OPTIONS


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return host.count(".") == 3


def _convert(exc: grpc.RpcError, what: str) -> ManagerError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    msg = f"{what}: {details}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.DEADLINE_EXCEEDED):
        return ManagerUnavailable(f"manager unreachable ({code.name}): {msg}", code.name)
    return ManagerError(msg, code.name)


# ------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class VersionInfo:
    """What the manager says about itself."""

    version: str
    pid: int
    target_pid: int
    node_mode: bool
    session: str
    features: list[str]


@dataclass(frozen=True)
class Listening:
    """A socket a process listens on."""

    protocol: str
    address: str
    port: int


@dataclass(frozen=True)
class ProcessInfo:
    """One process of the target."""

    pid: int
    ppid: int
    uid: int
    user: str
    argv: list[str]
    comm: str
    listening: list[Listening]
    is_target: bool

    @property
    def command(self) -> str:
        """The command line as one string."""
        return " ".join(self.argv) or f"[{self.comm}]"


@dataclass
class ExecResult:
    """How a command ended and what it printed (when captured)."""

    exit_code: int
    signal: int = 0
    timed_out: bool = False
    duration: float = 0.0
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def ok(self) -> bool:
        """Exit code 0 and no timeout."""
        return self.exit_code == 0 and not self.timed_out

    @property
    def stdout_text(self) -> str:
        """stdout decoded as UTF-8 (invalid bytes replaced)."""
        return self.stdout.decode(errors="replace")

    @property
    def stderr_text(self) -> str:
        """stderr decoded as UTF-8 (invalid bytes replaced)."""
        return self.stderr.decode(errors="replace")


@dataclass(frozen=True)
class RedirectSpec:
    """What to redirect. ``header`` = (name, value) redirects only matching HTTP/1.1 requests
    (decided per request, also on keep-alive connections); the rest reaches the app."""

    direction: Literal["incoming", "outgoing"]
    ports: tuple[int, ...] | list[int]
    destination: str | None = None
    fail_open: bool = True
    fail_open_timeout: float = 3.0
    header: tuple[str, str] | None = None
    session: str | None = None

    def to_pb(self) -> pb.RedirectSpec:
        """The protobuf message."""
        spec = pb.RedirectSpec(
            direction=pb.INCOMING if self.direction == "incoming" else pb.OUTGOING,
            ports=list(self.ports), destination=self.destination or "",
            fail_open=self.fail_open, fail_open_timeout_seconds=self.fail_open_timeout,
            session=self.session or "", batch_closed=True)
        if self.header:
            spec.header_filter.name, spec.header_filter.value = self.header
        return spec


@dataclass(frozen=True)
class RedirectEventInfo:
    """A connection opened or closed on a redirect (for reporting)."""

    kind: Literal["connection", "closed", "rejected", "tunnel-closed"]
    connection_id: int
    original: tuple[str, int] | None = None
    peer: tuple[str, int] | None = None
    route: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    error: str = ""


ForwardTo = tuple[str, int] | dict[int, tuple[str, int]] | Callable[[tuple[str, int]], tuple[str, int]]


@dataclass(frozen=True)
class CaptureResult:
    """A finished capture."""

    path: str
    packets: int
    bytes: int
    reason: str
    error: str = ""


@dataclass(frozen=True)
class RemoteFile:
    """A file in the target's root."""

    path: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float


@dataclass
class RemoteEntry:
    """One entry of a folder listing: ``path`` relative to the folder listed."""

    path: str
    kind: str  # file, dir, symlink, other
    file: RemoteFile
    link: str = ""


@dataclass
class NetInfo:
    """The target's network namespace, as plain data."""

    interfaces: list[dict[str, Any]]
    addresses: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    neighbours: list[dict[str, Any]]
    resolv_conf: str
    hosts: str


@dataclass
class ProbeResult:
    """Same shape as an ``http`` step's result: status, headers, text, json, elapsed."""

    ok: bool
    status: int = 0
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed: float = 0.0  # seconds
    error: str = ""
    addresses: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode(errors="replace")

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return _json.loads(self.body)
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for templates and reports."""
        return {"ok": self.ok, "status": self.status, "reason": self.reason,
                "headers": self.headers, "text": self.text, "json": self.json,
                "elapsed": self.elapsed, "elapsed_ms": self.elapsed * 1000,
                "error": self.error, "addresses": self.addresses}


# ------------------------------------------------------------------------------------------
# Redirect handle


class RedirectHandle:
    """A running redirect. Background threads open a Tunnel for each new connection and join it
    to a socket connected to the operator-side address; connections the operator side refuses
    are rejected so the manager fails open. :meth:`close` ends it (the manager removes the
    rules); so does the channel dying."""

    def __init__(self, client: ManagerClient, spec: RedirectSpec, forward_to: ForwardTo,
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
        self.closed_by_user = False
        self.redirect_id = 0
        self._raw_data = False  # the manager's tunnels accept raw data frames
        # Pooled tunnels: opened in advance, so a new connection costs no round trip.
        self._pool_size = pool_size
        self._idle_tunnels: set[PooledTunnel] = set()

    # The request stream: spec, then rejections, until close().
    def _request_iter(self) -> Iterator[pb.RedirectRequest]:
        yield pb.RedirectRequest(spec=self.spec.to_pb())
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _start(self) -> None:
        stub = self._client._stub
        self._call = stub.Redirect(self._request_iter(), metadata=self._client._metadata)
        try:
            first = next(self._call)
        except grpc.RpcError as exc:
            raise _convert(exc, "redirect") from None
        except StopIteration:
            raise ManagerError("redirect: the manager ended the stream at once") from None
        self.listen_port = first.ready.listen_port
        self.rules = list(first.ready.rules)
        self.warnings = list(first.ready.warnings)
        self.session = first.ready.session
        self.redirect_id = first.ready.redirect_id
        self._raw_data = first.ready.raw_data
        if self._client.unix_path:  # tunnels will carry bulk data to the manager
            widen_send_buffers(self._client.unix_path, peer=True)
        threading.Thread(target=self._events, daemon=True, name="redirect-events").start()
        if self.redirect_id:
            for _ in range(self._pool_size):
                self._add_pooled()

    def _add_pooled(self) -> None:
        if self._done.is_set() or self.closed_by_user:
            return
        tunnel = PooledTunnel(self._client.tunnel(), self._client._metadata, self.redirect_id,
                              keep_idle=self._pool_size, raw=self._raw_data)
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
                    _WORKERS.submit(self._serve, info)
                    self._emit(info)
                elif kind in ("closed", "closed_batch"):
                    for c2 in ev.closed_batch.closed if kind == "closed_batch" else [ev.closed]:
                        self._emit(RedirectEventInfo("closed", c2.connection_id, route=c2.route,
                                                     bytes_in=c2.bytes_from_peer,
                                                     bytes_out=c2.bytes_to_peer,
                                                     error=c2.error))
        except grpc.RpcError as exc:
            if not self.closed_by_user:
                self.error = f"{exc.code().name}: {exc.details()}"
        finally:
            self._done.set()

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
            stats = run_tunnel(self._client.tunnel(), self._client._metadata, info.connection_id,
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
        for tunnel in idle:
            tunnel.cancel()
        self._requests.put(None)  # half-close: the manager stops the session
        if not self._done.wait(timeout):
            self._call.cancel()
        if abort_connections:
            with self._lock:
                socks = list(self._sockets)
            for s in socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> RedirectHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------
# The client


class ManagerClient:
    """Typed calls to one manager. Thread-safe (gRPC channels are)."""

    def __init__(self, channel: grpc.Channel, token: str, timeout: float = 30.0) -> None:
        self.channel = channel
        self.timeout = timeout
        self._token = token
        self._metadata = [("authorization", f"Bearer {token}")]
        self._stub = pb_grpc.ManagerStub(channel)
        self._tunnel = tunnel_method(channel)  # Tunnel with the raw frame codec
        self.unix_path = ""  # the manager's unix socket (node mode), if that is the address
        # Tunnel streams go on the lane while it is up (see kdiag_manager.wire.lane), else on gRPC.
        self.lane: LaneClient | None = None
        self._lane_socket: socket.socket | None = None

    def tunnel(self) -> Any:
        """The Tunnel method for a new call: on the lane when it is up, else over gRPC."""
        lane = self.lane
        if lane is not None and lane.ready:
            return lane.method
        return self._tunnel

    def open_lane(self, address: str) -> bool:
        """Connect the lane at ``address`` (node mode: a socket of its own); False if it
        cannot be had (Tunnel calls stay on gRPC)."""
        try:
            self.lane, self._lane_socket = connect_socket(address, self._token)
        except OSError as exc:
            log.info("no lane at %s: %s", address, exc)
            return False
        return self.lane.wait_ready()

    @classmethod
    def connect(cls, address: str, token: str, timeout: float = 30.0,
                ready_timeout: float = 10.0) -> ManagerClient:
        """Open a channel to ``address`` (``host:port`` or ``unix:/path``) and wait until it is
        connected (ManagerUnavailable otherwise)."""
        grpccore.loaded()
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        try:
            grpc.channel_ready_future(channel).result(timeout=ready_timeout)
        except grpc.FutureTimeoutError:
            channel.close()
            raise ManagerUnavailable(f"manager at {address} did not answer within "
                                     f"{ready_timeout:g}s") from None
        client = cls(channel, token, timeout)
        if address.startswith("unix:"):
            client.unix_path = address[len("unix:"):]
        return client

    def close(self) -> None:
        """Close the channel (ends every stream: redirects stop, their rules go)."""
        if self.lane is not None:
            self.lane.close()
        if self._lane_socket is not None:
            with contextlib.suppress(OSError):
                self._lane_socket.shutdown(socket.SHUT_RDWR)
            self._lane_socket.close()
        self.channel.close()

    # -- simple calls ----------------------------------------------------------------------

    def version(self) -> VersionInfo:
        """The manager's version and identity (also a health check)."""
        try:
            r = self._stub.Version(pb.VersionRequest(), metadata=self._metadata,
                                   timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _convert(exc, "version") from None
        return VersionInfo(r.version, r.pid, r.target_pid, r.node_mode, r.session,
                           list(r.features))

    def ps(self, all_processes: bool = False) -> list[ProcessInfo]:
        """The target's processes (same PID and network namespace) with listening sockets."""
        try:
            r = self._stub.Ps(pb.PsRequest(all=all_processes), metadata=self._metadata,
                              timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _convert(exc, "ps") from None
        return [ProcessInfo(p.pid, p.ppid, p.uid, p.user, list(p.argv), p.comm,
                            [Listening(s.protocol, s.address, s.port) for s in p.listening],
                            p.is_target) for p in r.processes]

    def net(self) -> NetInfo:
        """Interfaces, addresses, routes, neighbours, resolv.conf and hosts of the target."""
        try:
            r = self._stub.Net(pb.NetRequest(), metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _convert(exc, "net") from None
        from google.protobuf.json_format import MessageToDict

        def rows(items: Any) -> list[dict[str, Any]]:
            return [MessageToDict(i, preserving_proto_field_name=True,
                                  always_print_fields_with_no_presence=True) for i in items]

        return NetInfo(rows(r.interfaces), rows(r.addresses), rows(r.routes),
                       rows(r.neighbours), r.resolv_conf, r.hosts)

    # -- exec ------------------------------------------------------------------------------

    def exec(self, argv: list[str] | None = None, script: str | None = None, *,
             stdin: bytes | BinaryIO | None = None, env: dict[str, str] | None = None,
             inherit_env: bool = True, timeout: float | None = None,
             workdir: str | None = None, host: bool = False,
             on_output: Callable[[str, bytes], None] | None = None,
             capture: bool = True) -> ExecResult:
        """Run ``argv`` (the target's binary, else the busybox applet) or ``script`` (busybox
        ash) in the target's namespaces and root.

        Output is passed to ``on_output(stream, data)`` as it arrives ("stdout"/"stderr") and,
        with ``capture``, collected in the result. ``timeout`` kills the whole process group
        (the result says ``timed_out``). ``host`` (node mode only) runs with the host's files
        and tools but inside the target's network namespace, e.g. ``ss``/``curl`` from the host.
        """
        start = pb.ExecStart(argv=argv or [], script=script or "", env=env or {},
                             inherit_env=inherit_env, timeout_seconds=timeout or 0,
                             workdir=workdir or "", host=host)

        def requests() -> Iterator[pb.ExecRequest]:
            yield pb.ExecRequest(start=start)
            if isinstance(stdin, bytes | bytearray):
                for i in range(0, len(stdin), CHUNK):
                    yield pb.ExecRequest(stdin=bytes(stdin[i:i + CHUNK]))
            elif stdin is not None:
                while data := stdin.read(CHUNK):
                    yield pb.ExecRequest(stdin=data)
            yield pb.ExecRequest(stdin_eof=True)

        out: list[bytes] = []
        err: list[bytes] = []
        result = ExecResult(exit_code=-1)
        deadline = None if timeout is None else timeout + 30
        try:
            for r in self._stub.Exec(requests(), metadata=self._metadata, timeout=deadline):
                kind = r.WhichOneof("msg")
                if kind in ("stdout", "stderr"):
                    data = getattr(r, kind)
                    if capture:
                        (out if kind == "stdout" else err).append(data)
                    if on_output is not None:
                        on_output(kind, data)
                elif kind == "exit":
                    e = r.exit
                    result = ExecResult(e.exit_code, e.signal, e.timed_out, e.duration_seconds)
        except grpc.RpcError as exc:
            raise _convert(exc, "exec") from None
        result.stdout = b"".join(out)
        result.stderr = b"".join(err)
        return result

    def shell_tty(self, argv: list[str] | None = None, *, stdin_fd: int = 0,
                  stdout_fd: int = 1, env: dict[str, str] | None = None,
                  host: bool = False) -> int:
        """An interactive shell (default busybox ``ash -l`` in the target) on a pseudo-terminal,
        wired to the local terminal (put in raw mode while it runs). Returns the exit code."""
        import select
        import signal as signal_mod
        import termios
        import tty

        is_tty = os.isatty(stdin_fd)
        rows, cols = (os.get_terminal_size(stdout_fd) if os.isatty(stdout_fd) else (24, 80))[::-1]
        script = None if argv else "exec ash -l"
        start = pb.ExecStart(argv=argv or [], script=script or "", tty=True, rows=rows,
                             cols=cols, inherit_env=True, env=env or {}, host=host)
        if host and not argv:
            start.script = "exec ${SHELL:-/bin/sh} -l"
        inputs: queue.SimpleQueue[pb.ExecRequest | None] = queue.SimpleQueue()
        stop = threading.Event()

        def requests() -> Iterator[pb.ExecRequest]:
            yield pb.ExecRequest(start=start)
            while (item := inputs.get()) is not None:
                yield item

        def pump_stdin() -> None:
            while not stop.is_set():
                try:
                    ready, _, _ = select.select([stdin_fd], [], [], 0.2)
                    if not ready:
                        continue
                    data = os.read(stdin_fd, 4096)
                except (OSError, ValueError):  # the terminal went away
                    return
                if not data:
                    inputs.put(pb.ExecRequest(stdin_eof=True))
                    return
                inputs.put(pb.ExecRequest(stdin=data))

        def on_winch(signum: int, frame: object) -> None:
            size = os.get_terminal_size(stdout_fd)
            inputs.put(pb.ExecRequest(resize=pb.WindowSize(rows=size.lines, cols=size.columns)))

        saved = termios.tcgetattr(stdin_fd) if is_tty else None
        old_winch = None
        code = -1
        try:
            if is_tty:
                tty.setraw(stdin_fd)
                if threading.current_thread() is threading.main_thread():
                    old_winch = signal_mod.signal(signal_mod.SIGWINCH, on_winch)
            threading.Thread(target=pump_stdin, daemon=True).start()
            for r in self._stub.Exec(requests(), metadata=self._metadata):
                kind = r.WhichOneof("msg")
                if kind in ("stdout", "stderr"):
                    os.write(stdout_fd, getattr(r, kind))
                elif kind == "exit":
                    code = r.exit.exit_code
        except grpc.RpcError as exc:
            raise _convert(exc, "shell") from None
        finally:
            stop.set()
            inputs.put(None)
            if saved is not None:
                termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
            if old_winch is not None:
                signal_mod.signal(signal_mod.SIGWINCH, old_winch)
        return code

    # -- redirect --------------------------------------------------------------------------

    def redirect(self, spec: RedirectSpec, forward_to: ForwardTo, *,
                 on_event: Callable[[RedirectEventInfo], None] | None = None,
                 connect_timeout: float = 2.0, pool_size: int = 4) -> RedirectHandle:
        """Start a redirect; returns once the manager's rules are in place.

        ``forward_to`` is the operator-side address: one (host, port), a {target port: (host,
        port)} map, or a function of the original destination. ``pool_size`` tunnels are
        opened in advance so that a new connection needs no extra round trip (0: none).
        """
        handle = RedirectHandle(self, spec, forward_to, on_event, connect_timeout, pool_size)
        handle._start()
        return handle

    # -- capture ---------------------------------------------------------------------------

    def capture(self, path: str | Path, filter: str = "", *, interface: str = "",
                max_packets: int = 0, max_bytes: int = 0, duration: float = 0,
                snaplen: int = 0, stop: threading.Event | None = None,
                started: threading.Event | None = None) -> CaptureResult:
        """Capture packets of the target's network namespace into the pcap file ``path``.

        Ends at the first limit reached, or when ``stop`` is set (gracefully: what tcpdump
        holds is flushed into the file). ``started`` is set once packets are being captured.
        """
        req = pb.CaptureRequest(filter=filter, interface=interface, max_packets=max_packets,
                                max_bytes=max_bytes, duration_seconds=duration, snaplen=snaplen)
        controls: queue.SimpleQueue[pb.CaptureControl | None] = queue.SimpleQueue()

        def requests() -> Iterator[pb.CaptureControl]:
            yield pb.CaptureControl(start=req)
            while (item := controls.get()) is not None:
                yield item

        def stop_when_asked() -> None:
            assert stop is not None
            stop.wait()
            controls.put(pb.CaptureControl(stop=True))
            controls.put(None)

        call = self._stub.Capture(requests(), metadata=self._metadata)
        if stop is not None:
            threading.Thread(target=stop_when_asked, daemon=True).start()
        done = pb.CaptureDone(reason="cancelled")
        try:
            with open(path, "wb") as f:
                for chunk in call:
                    kind = chunk.WhichOneof("msg")
                    if kind == "data":
                        f.write(chunk.data)
                    elif kind == "started":
                        if started is not None:
                            started.set()
                    else:
                        done = chunk.done
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise _convert(exc, "capture") from None
        finally:
            controls.put(None)  # ends the request stream if the capture ended by itself
        if done.error and not done.packets:
            raise ManagerError(f"capture: {done.error}")
        return CaptureResult(str(path), done.packets, done.bytes, done.reason, done.error)

    # -- copy ------------------------------------------------------------------------------

    def copy_from(self, remote_path: str, local_path: str | Path, *,
                  max_bytes: int = 0, keep_mode: bool = True) -> RemoteFile:
        """Copy a file out of the target's root filesystem (mode kept)."""
        info = None
        tmp = Path(f"{local_path}.kdiag-partial")
        try:
            with open(tmp, "wb") as f:
                for chunk in self._stub.ReadFile(
                        pb.ReadFileRequest(path=remote_path, max_bytes=max_bytes),
                        metadata=self._metadata, timeout=None):
                    if chunk.WhichOneof("msg") == "info":
                        info = chunk.info
                    else:
                        f.write(chunk.data)
        except grpc.RpcError as exc:
            tmp.unlink(missing_ok=True)
            raise _convert(exc, f"copy from {remote_path}") from None
        assert info is not None
        if keep_mode:
            os.chmod(tmp, stat.S_IMODE(info.mode))
        os.replace(tmp, local_path)
        return RemoteFile(info.path, info.size, info.mode, info.uid, info.gid, info.mtime)

    def copy_to(self, local_path: str | Path, remote_path: str, *, mode: int | None = None,
                make_parents: bool = False, owner: tuple[int, int] | None = None) -> RemoteFile:
        """Copy a local file into the target's root filesystem (mode kept unless given)."""
        st = os.stat(local_path)
        info = pb.FileInfo(path=remote_path, size=st.st_size,
                           mode=stat.S_IMODE(st.st_mode) if mode is None else mode,
                           make_parents=make_parents, mtime=st.st_mtime)
        if owner is not None:
            info.keep_owner = True
            info.uid, info.gid = owner

        def chunks() -> Iterator[pb.FileChunk]:
            yield pb.FileChunk(info=info)
            with open(local_path, "rb") as f:
                while data := f.read(CHUNK):
                    yield pb.FileChunk(data=data)

        try:
            r = self._stub.WriteFile(chunks(), metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _convert(exc, f"copy to {remote_path}") from None
        i = r.info
        return RemoteFile(i.path, i.size, i.mode, i.uid, i.gid, i.mtime)

    def list_dir(self, remote_path: str, *, max_entries: int = 0
                 ) -> tuple[list[RemoteEntry], bool]:
        """Everything under a folder of the target (symlinks not followed), each folder
        before its contents; and whether the listing was cut at ``max_entries``."""
        try:
            r = self._stub.ListDir(pb.ListDirRequest(path=remote_path, max_entries=max_entries),
                                   metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _convert(exc, f"list {remote_path}") from None
        entries = [RemoteEntry(e.path, e.kind, RemoteFile(e.info.path, e.info.size, e.info.mode,
                                                          e.info.uid, e.info.gid, e.info.mtime),
                               e.link) for e in r.entries]
        return entries, r.truncated

    def make_dir(self, remote_path: str, *, mode: int = 0o755,
                 make_parents: bool = False) -> RemoteFile:
        """Make a folder in the target's root filesystem (or set the mode of one there)."""
        info = pb.FileInfo(path=remote_path, mode=mode, directory=True,
                           make_parents=make_parents)
        try:
            r = self._stub.WriteFile(iter([pb.FileChunk(info=info)]), metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _convert(exc, f"make folder {remote_path}") from None
        i = r.info
        return RemoteFile(i.path, i.size, i.mode, i.uid, i.gid, i.mtime)

    # -- probe -----------------------------------------------------------------------------

    def _probe(self, req: pb.ProbeRequest) -> ProbeResult:
        try:
            r = self._stub.Probe(req, metadata=self._metadata,
                                 timeout=(req.timeout_seconds or 5) + 10)
        except grpc.RpcError as exc:
            raise _convert(exc, "probe") from None
        headers: dict[str, str] = {}
        for h in r.headers:
            headers[h.name] = f"{headers[h.name]}, {h.value}" if h.name in headers else h.value
        return ProbeResult(r.ok, r.status, r.reason, headers, r.body, r.elapsed_ms / 1000,
                           r.error, list(r.addresses), r.truncated)

    def probe_http(self, url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                   body: bytes | str = b"", timeout: float = 5.0,
                   bypass_redirect: bool = False, max_body_bytes: int = 0,
                   verify: bool = False) -> ProbeResult:
        """An HTTP request from inside the target's network namespace (``verify``: check an
        HTTPS certificate with the target's own CA bundle)."""
        data = body.encode() if isinstance(body, str) else body
        return self._probe(pb.ProbeRequest(kind="http", url=url, method=method,
                                           headers=headers or {}, body=data,
                                           timeout_seconds=timeout,
                                           bypass_redirect=bypass_redirect,
                                           max_body_bytes=max_body_bytes, verify=verify))

    def probe_tcp(self, host: str, port: int, *, timeout: float = 5.0,
                  bypass_redirect: bool = False, send: bytes = b"",
                  expect: bytes = b"") -> ProbeResult:
        """A TCP connect from inside the target's network namespace; then ``send`` these bytes
        and, with ``expect``, read the reply (``body``) until it holds them (else not ok)."""
        return self._probe(pb.ProbeRequest(kind="tcp", host=host, port=port,
                                           timeout_seconds=timeout,
                                           bypass_redirect=bypass_redirect, send=send,
                                           expect=expect))

    def probe_dns(self, name: str, *, timeout: float = 5.0) -> ProbeResult:
        """Resolve ``name`` with the target's hosts file and resolv.conf (A and AAAA)."""
        return self._probe(pb.ProbeRequest(kind="dns", host=name, timeout_seconds=timeout))
