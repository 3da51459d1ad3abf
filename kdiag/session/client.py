"""ManagerClient: typed calls to a kdiag manager over one gRPC channel.

Every call carries the session token. gRPC errors become :class:`~kdiag.errors.ManagerError`
(a step failed, exit 1) or :class:`~kdiag.errors.ManagerUnavailable` (the manager cannot be
reached, exit 3). What the calls return is in :mod:`.results`; a running redirect is a
:class:`~kdiag.session.redirect.RedirectHandle`; the interactive shell is :mod:`.terminal`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import grpc
from kdiag_manager.wire import grpccore
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.api.v1 import manager_pb2_grpc as pb_grpc
from kdiag_manager.wire.channel import TRANSPORT_OPTIONS

from kdiag.errors import EnvironmentProblem, ManagerError, ManagerUnavailable

from .grpcerrors import convert
from .lane import LaneClient, connect_socket
from .output import DEFAULT_MAX_OUTPUT, HeadTail
from .redirect import RedirectHandle
from .results import (
    CaptureResult,
    ExecResult,
    ForwardTo,
    Listening,
    NetInfo,
    ProbeResult,
    ProcessInfo,
    RedirectEventInfo,
    RedirectSpec,
    RemoteEntry,
    RemoteFile,
    VersionInfo,
)
from .tunnel import tunnel_method

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
CHANNEL_OPTIONS = TRANSPORT_OPTIONS


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
        # A node's manager sees every pod's processes: names their pod and container.
        self.name_pods: Callable[[list[ProcessInfo]], list[ProcessInfo]] | None = None
        self.every_process = False  # a node: its processes are in many network namespaces

    @property
    def metadata(self) -> list[tuple[str, str]]:
        """The metadata every call carries (the session token)."""
        return self._metadata

    def open_redirect(self, requests: Iterator[pb.RedirectRequest]) -> Any:
        """The Redirect call (its events to iterate) for ``requests``."""
        return self._stub.Redirect(requests, metadata=self._metadata)

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
            raise convert(exc, "version") from None
        return VersionInfo(r.version, r.pid, r.target_pid, r.node_mode, r.session,
                           list(r.features))

    def ps(self, all_processes: bool = False) -> list[ProcessInfo]:
        """The target's processes (same PID and network namespace) with listening sockets."""
        try:
            r = self._stub.Ps(pb.PsRequest(all=all_processes or self.every_process),
                              metadata=self._metadata,
                              timeout=self.timeout)
        except grpc.RpcError as exc:
            raise convert(exc, "ps") from None
        found = [ProcessInfo(p.pid, p.ppid, p.uid, p.user, list(p.argv), p.comm,
                             [Listening(s.protocol, s.address, s.port) for s in p.listening],
                             p.is_target, p.pod_uid, p.container_id) for p in r.processes]
        return self.name_pods(found) if self.name_pods is not None else found

    def environ(self) -> list[tuple[str, str]]:
        """The environment the target process was started with, in order (names and values
        decoded with ``surrogateescape``: ``os.fsencode`` gives back the exact bytes)."""
        try:
            r = self._stub.Environ(pb.EnvironRequest(), metadata=self._metadata,
                                   timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # the image is the environment's
                raise EnvironmentProblem("this manager cannot read the target's environment "
                                         "(it predates that call): use a manager image of "
                                         "this kdiag's version") from None
            raise convert(exc, "read the target's environment") from None
        return [(os.fsdecode(v.name), os.fsdecode(v.value)) for v in r.vars]

    def net(self) -> NetInfo:
        """Interfaces, addresses, routes, neighbours, resolv.conf and hosts of the target."""
        try:
            r = self._stub.Net(pb.NetRequest(), metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise convert(exc, "net") from None
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
             capture: bool = True, capture_limit: int = DEFAULT_MAX_OUTPUT) -> ExecResult:
        """Run ``argv`` (the target's binary, else the busybox applet) or ``script`` (busybox
        ash) in the target's namespaces and root.

        Output is passed to ``on_output(stream, data)`` as it arrives ("stdout"/"stderr"); the
        stream is read no faster than it returns (flow control holds the manager back, nothing
        is dropped). With ``capture``, the result keeps the first and last ``capture_limit``
        bytes of each stream (``truncated`` says whether some were cut). ``timeout`` kills the
        whole process group (the result says ``timed_out``). ``host`` (node mode only) runs
        with the host's files and tools but inside the target's network namespace, e.g.
        ``ss``/``curl`` from the host.
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

        kept = {"stdout": HeadTail(capture_limit), "stderr": HeadTail(capture_limit)}
        result = ExecResult(exit_code=-1)
        deadline = None if timeout is None else timeout + 30
        try:
            for r in self._stub.Exec(requests(), metadata=self._metadata, timeout=deadline):
                kind = r.WhichOneof("msg")
                if kind in ("stdout", "stderr"):
                    data = getattr(r, kind)
                    if capture:
                        kept[kind].add(data)
                    if on_output is not None:
                        on_output(kind, data)
                elif kind == "exit":
                    e = r.exit
                    result = ExecResult(e.exit_code, e.signal, e.timed_out, e.duration_seconds)
        except grpc.RpcError as exc:
            raise convert(exc, "exec") from None
        result.stdout, result.stderr = kept["stdout"].value(), kept["stderr"].value()
        result.truncated = kept["stdout"].truncated or kept["stderr"].truncated
        return result

    def shell_tty(self, argv: list[str] | None = None, *, stdin_fd: int = 0,
                  stdout_fd: int = 1, env: dict[str, str] | None = None,
                  host: bool = False) -> int:
        """An interactive shell (default busybox ``ash -l`` in the target) on a pseudo-terminal,
        wired to the local terminal (put in raw mode while it runs). Returns the exit code."""
        from .terminal import shell_tty

        return shell_tty(self._stub, self._metadata, argv, stdin_fd=stdin_fd,
                         stdout_fd=stdout_fd, env=env, host=host)

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

    def capture(self, path: str | Path | BinaryIO, filter: str = "", *, interface: str = "",
                max_packets: int = 0, max_bytes: int = 0, duration: float = 0,
                snaplen: int = 0, stop: threading.Event | None = None,
                started: threading.Event | None = None) -> CaptureResult:
        """Capture packets of the target's network namespace into the pcap file ``path``, or
        into a binary stream (live: flushed as each batch of whole packets arrives; an OSError
        writing it, e.g. a reader gone, cancels the capture and is raised).

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
        live = not isinstance(path, (str, Path))
        try:
            with _binary_output(path) as f:
                for chunk in call:
                    kind = chunk.WhichOneof("msg")
                    if kind == "data":
                        f.write(chunk.data)
                        if live:
                            f.flush()
                    elif kind == "started":
                        if started is not None:
                            started.set()
                    else:
                        done = chunk.done
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise convert(exc, "capture") from None
        except OSError:
            call.cancel()  # the output is gone: tcpdump stops
            raise
        finally:
            controls.put(None)  # ends the request stream if the capture ended by itself
        if done.error and not done.packets:
            raise ManagerError(f"capture: {done.error}")
        return CaptureResult(str(path) if not live else "-", done.packets, done.bytes,
                             done.reason, done.error)

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
            raise convert(exc, f"copy from {remote_path}") from None
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
            raise convert(exc, f"copy to {remote_path}") from None
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
            raise convert(exc, f"list {remote_path}") from None
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
            raise convert(exc, f"make folder {remote_path}") from None
        i = r.info
        return RemoteFile(i.path, i.size, i.mode, i.uid, i.gid, i.mtime)

    # -- probe -----------------------------------------------------------------------------

    def _probe(self, req: pb.ProbeRequest) -> ProbeResult:
        try:
            r = self._stub.Probe(req, metadata=self._metadata,
                                 timeout=(req.timeout_seconds or 5) + 10)
        except grpc.RpcError as exc:
            raise convert(exc, "probe") from None
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


@contextlib.contextmanager
def _binary_output(target: str | Path | BinaryIO) -> Iterator[BinaryIO]:
    """``target`` opened for writing (a path), or as given (a stream: left open)."""
    if isinstance(target, (str, Path)):
        with open(target, "wb") as f:
            yield f
    else:
        yield target
