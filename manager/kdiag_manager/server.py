"""The gRPC service: wires each RPC to its feature module."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from . import __version__, laneserver, redirect, tunnel
from .auth import TokenHash, TokenInterceptor
from .config import Config
from .connections import ConnectionRegistry
from .iptables import Iptables, IptablesError
from .redirectrules import RulesError
from .redirectspec import RedirectOptions, SpecError
from .wire import channel, frames, grpccore
from .wire.api.v1 import manager_pb2 as pb
from .wire.api.v1 import manager_pb2_grpc as pb_grpc
from .wire.channel import TRANSPORT_OPTIONS
from .wire.workers import Workers

log = logging.getLogger(__name__)

FEATURES = ["exec", "tty", "redirect", "fail-open", "header-filter", "ps", "capture", "copy",
            "net", "probe", "environ", "read-tree"]

# Each tunnel holds one worker thread for its lifetime (plus the control streams and calls).
MAX_WORKERS = 1024
MAX_RECEIVE = 4 << 20
"""The largest message the manager takes, before or after the token is checked: a client's
largest is a 2 MiB tunnel chunk (``kdiag.session.tunnel.MAX_CHUNK``) plus its frame."""
# What a peer can make the server hold before the interceptor sees its token (the token is
# checked on each call's metadata, before the handler runs, but gRPC reads a unary call's
# request message first): metadata of at most 8 KiB (16 KiB hard), messages of at most
# MAX_RECEIVE, at most MAX_WORKERS streams per connection. gRPC has no deadline for a
# connection that never calls, nor a cap on connections: an idle one costs the core a few KB
# and no thread (measured in tests/manager/test_lane_limits.py).
_PRE_AUTH_OPTIONS = {
    "grpc.max_receive_message_length": MAX_RECEIVE,
    "grpc.max_metadata_size": 8 << 10,
    "grpc.absolute_max_metadata_size": 16 << 10,
    "grpc.max_concurrent_streams": MAX_WORKERS,
}
SERVER_OPTIONS = [
    *((name, value) for name, value in TRANSPORT_OPTIONS if name not in _PRE_AUTH_OPTIONS),
    *_PRE_AUTH_OPTIONS.items(),
    ("grpc.http2.min_ping_interval_without_data_ms", 100),  # the CLI pings every 0.3 s
    ("grpc.so_reuseport", 0),
]


class ManagerService(pb_grpc.ManagerServicer):
    """Implements kdiag.manager.v1.Manager."""

    def __init__(self, config: Config, iptables: Iptables | None = None) -> None:
        self.config = config
        self.iptables = iptables or Iptables()
        self.connections = ConnectionRegistry()
        self.unix_path = ""  # the unix socket the server listens on, if any

    def Version(self, request: pb.VersionRequest, context: Any) -> pb.VersionResponse:
        import os

        return pb.VersionResponse(
            version=__version__, pid=os.getpid(), target_pid=self.config.target() or 0,
            node_mode=self.config.node_mode, session=self.config.session, features=FEATURES,
            python=".".join(map(str, sys.version_info[:3])))

    def Exec(self, request_iterator: Iterator[pb.ExecRequest], context: Any
             ) -> Iterator[pb.ExecResponse]:
        from . import exec as exec_

        first = next(request_iterator, None)
        if first is None or first.WhichOneof("msg") != "start":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be start")
            return
        try:
            yield from exec_.run(first.start, request_iterator, self.config, context)
        except exec_.ExecError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except OSError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot start: {exc}")

    def Redirect(self, request_iterator: Iterator[pb.RedirectRequest], context: Any
                 ) -> Iterator[pb.RedirectEvent]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("msg") != "spec":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be spec")
            return
        try:
            options = RedirectOptions.from_spec(first.spec, self.config.session)
        except SpecError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        # A mirror puts nothing on the app's path: its copies come from a packet socket.
        kind = _mirror_session() if options.mirror else redirect.RedirectSession
        session = kind(options, self.iptables, self.connections)
        try:
            ready = session.start()
        except (RulesError, IptablesError, OSError) as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot install redirect: {exc}")
            return
        # Whatever ends the call (client gone, cancelled, finished), the rules go.
        context.add_callback(session.stop)
        if self.unix_path:  # tunnels will carry bulk data to the client (see wire/channel.py)
            channel.widen_send_buffers(self.unix_path)

        def read_requests() -> None:
            try:
                for req in request_iterator:
                    if req.WhichOneof("msg") == "reject":
                        session.reject(req.reject.connection_id, req.reject.reason)
            except Exception:  # the client vanished
                pass
            finally:
                session.stop()  # half-closed by the client: the redirect is over

        import threading

        threading.Thread(target=read_requests, daemon=True, name="redirect-control").start()
        try:
            yield ready
            yield from session.outgoing_events(first.spec.batch_closed)
        finally:
            session.stop()
        if session.failure:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, session.failure)

    def Tunnel(self, request_iterator: Iterator[frames.Frame], context: Any
               ) -> Iterator[bytes | memoryview]:
        """Registered with the raw frame codec (see :func:`_add_service`), not protobuf."""
        first = next(request_iterator, None)
        if first is None or isinstance(first, memoryview) or first.WhichOneof("msg") != "open":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first frame must be open")
            return
        if first.open.connection_id == 0:  # a pooled tunnel, or a mirror's copy stream
            session = redirect.session_by_id(first.open.redirect_id)
            if session is None:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"redirect {first.open.redirect_id} is not running")
                return
            if first.open.copies or session.mirrors:
                yield from _copies(session, first.open, context)
                return
            yield from tunnel.serve_pooled(session, request_iterator, context, first.open)
            return
        conn = self.connections.claim(first.open.connection_id)
        if conn is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"connection {first.open.connection_id} is gone or already routed")
            return
        yield from tunnel.serve_claimed(conn, request_iterator, context, first.open)

    def Ps(self, request: pb.PsRequest, context: Any) -> pb.PsResponse:
        from . import ps

        return ps.list_processes(self.config.target(), request.all)

    def Capture(self, request_iterator: Iterator[pb.CaptureControl], context: Any
                ) -> Iterator[pb.CaptureChunk]:
        from . import capture

        yield from capture.run(request_iterator, self.config, context)

    def ReadFile(self, request: pb.ReadFileRequest, context: Any) -> Iterator[pb.FileChunk]:
        from . import copy

        try:
            yield from copy.read_file(request, self.config)
        except copy.CopyError as exc:
            context.abort(exc.code, str(exc))

    def WriteFile(self, request_iterator: Iterator[pb.FileChunk], context: Any
                  ) -> pb.WriteFileResponse:
        from . import copy

        try:
            return copy.write_file(request_iterator, self.config)
        except copy.CopyError as exc:
            context.abort(exc.code, str(exc))
            raise  # unreachable: abort raises

    def ListDir(self, request: pb.ListDirRequest, context: Any) -> pb.ListDirResponse:
        from . import copy

        try:
            return copy.list_dir(request, self.config)
        except copy.CopyError as exc:
            context.abort(exc.code, str(exc))
            raise  # unreachable: abort raises

    def ReadTree(self, request: pb.ReadTreeRequest, context: Any) -> Iterator[pb.TreeChunks]:
        from . import copy, readtree

        try:
            yield from readtree.read_tree(request, self.config)
        except copy.CopyError as exc:
            context.abort(exc.code, str(exc))

    def Net(self, request: pb.NetRequest, context: Any) -> pb.NetResponse:
        from . import net

        return net.describe(self.config.target())

    def Probe(self, request: pb.ProbeRequest, context: Any) -> pb.ProbeResponse:
        from . import probe

        return probe.run(request, self.config)

    def Environ(self, request: pb.EnvironRequest, context: Any) -> pb.EnvironResponse:
        from . import environ

        try:
            return environ.environ(self.config)
        except environ.EnvironError as exc:
            context.abort(exc.code, str(exc))
            raise  # unreachable: abort raises


OLDER_CLIENT = ("this kdiag is older than the manager: its mirror asks for a tunnel per copy, "
                "while the manager sends the copies on one stream (use kdiag and a manager of "
                "the same version)")


def _mirror_session() -> type[redirect.RedirectSession]:
    """The mirror's session class. Its modules (the packet socket, TCP reassembly, the copy
    stream: ≈ 0.5 MB) load with the first mirror, not into every idle manager."""
    from .mirror import MirrorSession

    return MirrorSession


def _copies(session: redirect.RedirectSession, opened: pb.TunnelOpen, context: Any
            ) -> Iterator[bytes]:
    """A mirror's copy stream. A pooled tunnel for a mirror comes from an older kdiag: the
    mirror ends with that error (its control stream says so)."""
    if not session.mirrors:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"redirect {opened.redirect_id} is not a mirror: it has no copy stream")
        return
    if not opened.copies:
        session.failure = OLDER_CLIENT
        session.stop()
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, OLDER_CLIENT)
        return
    from .copystream import StreamTaken
    from .mirror import MirrorSession

    assert isinstance(session, MirrorSession)  # (``mirrors``: its module is loaded)
    try:
        messages = session.serve_copies(context.add_callback)
        yield from messages
    except StreamTaken as exc:
        context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))


# Lane streams run their handler on these (one per Tunnel stream, as gRPC's pool does).
_LANE_WORKERS = Workers("lane", max_idle=32)


class _Handlers:
    """Stands in for a server to collect the generated code's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str,
                                       handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers = dict(handlers)


def _add_service(server: grpc.Server, servicer: ManagerService) -> None:
    """Register the Manager service as generated, except Tunnel: its frames are encoded and
    decoded by :mod:`frames` (identity serializers; see there for the measured reason)."""
    collected = _Handlers()
    pb_grpc.add_ManagerServicer_to_server(servicer, collected)
    handlers = collected.handlers
    handlers["Tunnel"] = grpc.stream_stream_rpc_method_handler(
        servicer.Tunnel, request_deserializer=frames.decode, response_serializer=None)
    service = frames.TUNNEL_METHOD.split("/")[1]
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


@dataclass
class Endpoints:
    """A built manager: its gRPC server (not yet started) and its lane (started), if any."""

    server: grpc.Server
    address: str
    lane: laneserver.LaneServer | None = None
    lane_address: str = ""

    def stop(self, grace: float = 1.0) -> None:
        """Stop the lane (its streams end) and the server."""
        if self.lane is not None:
            self.lane.close()
        self.server.stop(grace=grace).wait(grace + 1)


def build_server(config: Config, token: str | TokenHash, address: str,
                 iptables: Iptables | None = None, lane_address: str = "") -> Endpoints:
    """A server bound to ``address`` (``127.0.0.1:0`` or ``unix:/path``), with the address it
    is bound to (the real port). With ``lane_address``, a lane for Tunnel streams (see
    :mod:`lane`) listens there too, already accepting."""
    grpccore.loaded()
    auth = TokenInterceptor(token)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                                    thread_name_prefix="rpc"),
                         interceptors=[auth], options=SERVER_OPTIONS)
    service = ManagerService(config, iptables)
    _add_service(server, service)
    port = server.add_insecure_port(address)
    if address.startswith("unix:"):
        service.unix_path = address[len("unix:"):]
    if not address.startswith("unix:"):
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        address = f"{address.rsplit(':', 1)[0]}:{port}"
    built = Endpoints(server, address)
    if lane_address:
        listener, built.lane_address = laneserver.listen(lane_address)
        built.lane = laneserver.LaneServer(listener, auth.accepts, service.Tunnel, frames.decode,
                                     _LANE_WORKERS.submit)
        built.lane.start()
    return built
