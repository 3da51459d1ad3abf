"""Mirror: the app serves every connection as without kdiag; a copy of what each client sends,
taken from the packets, goes to the operator.

Nothing is put on the app's path: no rule, no listener, no proxy. A packet socket in the
target's network namespace (:mod:`packettap`, filtered in the kernel) sees the segments of the
mirrored ports; each connection is followed from its SYN, and what the client sends is put
back in order (:mod:`tcpreassembly`) and fed to a :class:`~mirrorcopy.Copy`, whose pieces
travel with every other copy's on the mirror's one copy stream to the CLI
(:mod:`copystream`); the CLI sends each copy to the operator's server (its replies are
discarded) and counts it. With a header filter only the matching requests are copied
(:mod:`mirrorhttp`). Whatever happens to a copy — bytes missing for good, the stream or the
operator side slow or absent, packets the kernel could not queue for the socket — the copy is
dropped and reported (``copy-dropped`` with the reason: on the copy stream for a copy, on the
control stream for a connection that got none), never passed on wrong and never silently.
The copy stream's end (the CLI gone) ends the mirror.

Each connection ends with a ``closed`` event on the route ``original`` (the app served it):
bytes from the client (by sequence number) and to it (from the app's FIN, or what the client
acknowledged); a connection the app refused (reset to the SYN) closes as ``dropped``.
Connections open before the mirror started (their SYN unseen) are joined at the first segment
that starts an HTTP/1.x request (clients' keep-alive pools); other such connections are not
copied.
"""

from __future__ import annotations

import ipaddress
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import httpfilter, redirect
from .copystream import CopyStream
from .mirrorcopy import Copy
from .mirrorhttp import HeaderCopier
from .packettap import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, PacketTap, Segment, parse
from .tcpreassembly import Reassembly, StreamGap, seq_diff
from .tunnelpool import Waker
from .wire.api.v1 import manager_pb2 as pb
from .wire.background import lower_this_thread

# Connections followed at once (beyond: not copied, reported).
MAX_FLOWS = 8192
# Out-of-order bytes all connections together may hold.
HELD_LIMIT = 32 << 20
# A connection with no packet for this long after one side ended is given up (its other
# side's FIN was not seen: the packet was lost).
LINGER = 60.0
# How often the reader looks at the socket's drop count and at lingering connections.
CHECK_EVERY = 0.2
# Packets read in one go before the copies they fed are pumped.
BATCH = 512
# How long the reader lets packets gather once one came (what a copy is delayed by, at most).
GATHER = 0.005
MECHANISM = "packet socket"


@dataclass
class _Flow:
    """One connection the mirror follows (the client's side, put back together)."""

    id: int
    client: tuple[str, int]
    app: tuple[str, int]
    isn: int
    stream: Reassembly
    copier: Copy | HeaderCopier | None = None
    dropped: str = ""
    client_done: bool = False
    app_done: bool = False
    app_isn: int | None = None
    app_fin: int | None = None
    acked: int | None = None
    sent: int = 0
    last: float = field(default_factory=time.monotonic)


class MirrorSession(redirect.RedirectSession):
    """A mirror: a redirect session without rules or listener whose connections are copies."""

    mirrors = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._flows: dict[tuple[tuple[str, int], tuple[str, int]], _Flow] = {}
        self._held = 0
        self._skip = self.options.skip_sources
        self._waker = Waker()
        self._reader = threading.Thread(target=self._read_loop, name="mirror-tap", daemon=True)
        self.copies = CopyStream(self._has_news)

    def start(self) -> pb.RedirectEvent:
        """Open the packet socket; return the ``ready`` event. Raises OSError (no
        CAP_NET_RAW: the message says so)."""
        with self._stop_lock:
            redirect.register(self)
            try:
                self._tap = PacketTap(self.options.ports)
            except OSError as exc:
                self.unregister()
                self._waker.close()
                raise OSError(exc.errno, f"cannot open a packet socket (needs CAP_NET_RAW): "
                                         f"{exc.strerror or exc}") from None
            except BaseException:
                self.unregister()
                self._waker.close()
                raise
        self._reader.start()
        return pb.RedirectEvent(ready=pb.RedirectReady(
            listen_port=0, rules=[], session=self.options.session, redirect_id=self.id,
            raw_data=True, mechanism=MECHANISM, copy_stream=True))

    def serve_copies(self, add_callback: Any) -> Iterator[bytes]:
        """The copy stream's messages (its Tunnel handler's); StreamTaken if it has one."""
        def gone() -> None:
            if not self.stopped:
                self.failure = "the mirror's copy stream ended (kdiag's side is gone)"
                self.stop()

        return self.copies.serve(add_callback, gone)

    # -- the packets ---------------------------------------------------------------------------

    def _read_loop(self) -> None:
        """The mirror's one thread: packets, then the copies they fed into the copy stream."""
        lower_this_thread()  # (the app comes first)
        tap, poller = self._tap, select.poll()
        poller.register(tap.sock, select.POLLIN)
        poller.register(self._waker.r, select.POLLIN)
        tap_fd, waker_fd = tap.sock.fileno(), self._waker.r.fileno()
        next_check = time.monotonic() + CHECK_EVERY
        try:
            while not self.stopped:
                events = poller.poll(CHECK_EVERY * 1000)
                if any(fd == tap_fd for fd, _ in events):
                    # Let packets gather (the socket holds them): one wake-up for many, and
                    # the app's exchange, under way right now, keeps the CPU.
                    time.sleep(GATHER)
                if any(fd == waker_fd for fd, _ in events):
                    self._waker.drain()
                for _ in range(BATCH):  # (then the copies get their turn)
                    if (packet := tap.read()) is None:
                        break
                    segment = parse(packet)
                    if segment is not None:
                        self._segment(segment)
                self.copies.pump()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + CHECK_EVERY
                    self._check(tap.drops())
        finally:
            tap.close()
            for flow in list(self._flows.values()):
                self._give_up(flow, "the mirror ended before the connection did")
            self.copies.pump()
            self.copies.close()
            self._waker.close()

    def stop(self) -> None:
        """Stop copying (the reader thread closes the packet socket, drops the copies under
        way and ends the copy stream)."""
        super().stop()
        self._waker.wake()

    def _has_news(self) -> None:
        """A copy has something for the stream (told from any thread)."""
        if threading.current_thread() is not self._reader:
            self._waker.wake()

    def _check(self, lost: int) -> None:
        """Packets lost (the socket's buffer overflowed): every copy under way may miss some,
        and a connection that started meanwhile may have none. And connections lingering."""
        now = time.monotonic()
        if lost:
            reason = (f"the kernel dropped {lost} packets of the mirror before the manager read "
                      "them (its socket buffer was full)")
            for flow in list(self._flows.values()):
                self._give_up(flow, reason)
            self._report_drop(self.registry.next_id(), reason + ": a connection that began "
                              "then may have no copy")
        for key, flow in list(self._flows.items()):
            if now - flow.last <= LINGER:
                continue
            if flow.app_isn is None:
                self._forget(key, flow)
                self.emit(_closed(flow.id, "dropped", 0, 0, "the app never answered"))
                self._give_up(flow, "the app never answered the connection", report=False)
            elif flow.client_done or flow.app_done:
                self._end(key, flow, "lost", f"its end was not seen within {LINGER:.0f} s")

    def _segment(self, seg: Segment) -> None:
        key = (seg.src, seg.dst)
        flow = self._flows.get(key)
        if flow is not None:
            self._from_client(key, flow, seg)
            return
        back = (seg.dst, seg.src)
        flow = self._flows.get(back)
        if flow is not None:
            self._from_app(back, flow, seg)
        elif seg.dst[1] not in self.options.ports or self._skipped(seg.src[0]):
            return
        elif seg.flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN:
            self._follow(key, seg)
        elif seg.data and not seg.flags & (TCP_SYN | TCP_RST) and _request_start(seg.data):
            # A connection open before the mirror (a client's keep-alive pool): joined at
            # what starts an HTTP request, as if its SYN had come just before.
            self._follow(key, seg, joined=True)

    def _skipped(self, source: str) -> bool:
        if not self._skip:
            return False
        address = ipaddress.ip_address(source)
        return any(address in network for network in self._skip)

    def _follow(self, key: tuple[tuple[str, int], tuple[str, int]], seg: Segment,
                joined: bool = False) -> None:
        isn = (seg.seq - 1) % (1 << 32) if joined else seg.seq
        flow = _Flow(self.registry.next_id(), seg.src, seg.dst, isn, Reassembly.after_syn(isn))
        if joined:  # (what the app sent before is not counted)
            flow.app_isn = (seg.ack - 1) % (1 << 32)
        if len(self._flows) >= MAX_FLOWS:
            self._report_drop(flow.id, f"more than {MAX_FLOWS} connections followed at once")
            return
        self._flows[key] = flow
        if seg.data:  # (TCP Fast Open, or joined)
            self._client_bytes(key, flow, seg)

    def _from_client(self, key: tuple[tuple[str, int], tuple[str, int]], flow: _Flow,
                     seg: Segment) -> None:
        flow.last = time.monotonic()
        if seg.flags & TCP_SYN:
            if seg.seq != flow.isn:  # the client port is used again: a new connection
                self._end(key, flow, "lost", "its end was not seen")
                self._segment(seg)
            return
        if seg.flags & TCP_ACK and (flow.acked is None or seq_diff(seg.ack, flow.acked) > 0):
            flow.acked = seg.ack
        if seg.flags & TCP_RST:
            self._end(key, flow, "reset", "connection reset")
            return
        self._client_bytes(key, flow, seg)

    def _client_bytes(self, key: tuple[tuple[str, int], tuple[str, int]], flow: _Flow,
                      seg: Segment) -> None:
        flow.sent = max(flow.sent, seq_diff((seg.seq + len(seg.data)) % (1 << 32),
                                            (flow.isn + 1) % (1 << 32)))
        fin = bool(seg.flags & TCP_FIN)
        if not flow.dropped:
            before, gap = flow.stream.waiting, ""
            try:
                data = flow.stream.segment(seg.seq, seg.data, fin)
            except StreamGap as exc:
                data, gap = b"", str(exc)
            self._held += flow.stream.waiting - before
            if not gap and self._held > HELD_LIMIT:
                gap = f"out-of-order bytes of all connections over {HELD_LIMIT}"
            if gap:
                self._give_up(flow, f"bytes missing from the copy: {gap}")
            elif data:
                self._copier(flow).feed(data)
        if fin and (flow.dropped or flow.stream.finished):
            flow.client_done = True
        if flow.client_done and flow.app_done:
            self._end(key, flow, "fin", "")

    def _from_app(self, key: tuple[tuple[str, int], tuple[str, int]], flow: _Flow,
                  seg: Segment) -> None:
        flow.last = time.monotonic()
        if seg.flags & TCP_SYN:
            flow.app_isn = seg.seq
        if seg.flags & TCP_RST:
            if flow.app_isn is None:  # refused (nothing listening, backlog full)
                self._forget(key, flow)
                self.emit(_closed(flow.id, "dropped", 0, 0, "the app reset the connection"))
                self._give_up(flow, "the app refused the connection", report=False)
            else:
                self._end(key, flow, "reset", "connection reset")
            return
        if seg.flags & TCP_FIN:
            flow.app_fin = (seg.seq + len(seg.data)) % (1 << 32)
            flow.app_done = True
            if flow.client_done:
                self._end(key, flow, "fin", "")

    # -- copies --------------------------------------------------------------------------------

    def _copier(self, flow: _Flow) -> Copy | HeaderCopier:
        if flow.copier is None:
            header = self.options.header
            flow.copier = self._new_copy(flow) if header is None else \
                HeaderCopier(header, lambda: self._new_copy(flow))
        return flow.copier

    def _new_copy(self, flow: _Flow) -> Copy:
        """A copy of ``flow``'s client's bytes, on the copy stream."""
        return self.copies.new_copy(self.registry.next_id(), flow.app, flow.client)

    def _give_up(self, flow: _Flow, reason: str, report: bool = True) -> None:
        """Nothing more is copied of ``flow``; its copy (if any) is dropped with ``reason``."""
        if flow.dropped:
            return
        flow.dropped = reason
        self._held -= flow.stream.discard()
        if isinstance(flow.copier, Copy):
            flow.copier.drop(reason)
        elif isinstance(flow.copier, HeaderCopier):
            flow.copier.give_up(reason)
        elif report:
            self._report_drop(self.registry.next_id(), reason)

    def _report_drop(self, copy_id: int, reason: str) -> None:
        self.emit(_closed(copy_id, "copy-dropped", 0, 0, reason))

    def _forget(self, key: tuple[tuple[str, int], tuple[str, int]], flow: _Flow) -> None:
        if self._flows.get(key) is flow:
            del self._flows[key]

    def _end(self, key: tuple[tuple[str, int], tuple[str, int]], flow: _Flow, how: str,
             error: str) -> None:
        """The connection is over (``how``: both FINs seen, a ``reset``, or its end ``lost``):
        its copy ends (whole; after a reset, with what came in order) or is dropped; its
        stats go out."""
        self._forget(key, flow)
        if how == "lost":
            self._give_up(flow, f"the connection's end was not seen ({error})")
        elif not flow.dropped:
            try:
                if how == "fin":
                    flow.stream.close_check()
                self._copier(flow).end()
            except StreamGap as exc:
                self._give_up(flow, f"bytes missing from the copy: {exc}")
        self._held -= flow.stream.discard()
        self.emit(_closed(flow.id, "original", flow.sent, _to_client(flow), error))


def _request_start(data: bytes) -> bool:
    """Does ``data`` start with an HTTP/1.x request line's method and a space?"""
    method, space, _ = data[:8].partition(b" ")
    return bool(space) and httpfilter.looks_like_http(method + b" ")


def _to_client(flow: _Flow) -> int:
    """Bytes the app sent: up to its FIN, else what the client acknowledged."""
    if flow.app_isn is None:
        return 0
    end = flow.app_fin if flow.app_fin is not None else flow.acked
    if end is None:
        return 0
    return max(seq_diff(end, (flow.app_isn + 1) % (1 << 32)), 0)


def _closed(conn_id: int, route: str, sent: int, received: int, error: str
            ) -> pb.RedirectEvent:
    return pb.RedirectEvent(closed=pb.ConnectionClosed(
        connection_id=conn_id, route=route, bytes_from_peer=sent, bytes_to_peer=received,
        error=error))
