"""The CLI's side of a mirror's copy stream (``kdiag.session.copies``) with the stream played
back from prepared messages (the manager's side is tested for real in tests/node): copies
interleaved on the stream reach a real local server whole, drops are reported once each, and
a manager that offers no copy stream is refused with a clear message."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kdiag_manager.wire.api.v1 import manager_pb2 as pb

from kdiag.session.copies import CopyReceiver
from kdiag.session.results import RedirectEventInfo


class _Played:
    """A call that yields the prepared frames, then ends (the manager closed the stream)."""

    def __init__(self, frames: list[pb.TunnelFrame]) -> None:
        self._frames = frames
        self.cancelled = False

    def __call__(self, requests: Iterator[bytes], metadata: Any = None) -> _Played:
        first = pb.TunnelFrame.FromString(next(requests))
        assert first.open.copies and first.open.redirect_id == 7
        return self

    def __iter__(self) -> Iterator[pb.TunnelFrame]:
        return iter(self._frames)

    def cancel(self) -> None:
        self.cancelled = True


def _message(*chunks: pb.CopyChunk) -> pb.TunnelFrame:
    return pb.TunnelFrame(copies=pb.CopyChunks(chunks=list(chunks)))


def _first(copy_id: int, data: bytes) -> pb.CopyChunk:
    return pb.CopyChunk(copy_id=copy_id, data=data,
                        original_destination=pb.Endpoint(host="10.0.0.1", port=8080),
                        peer=pb.Endpoint(host="10.0.0.2", port=40000 + copy_id))


class _Server(socketserver.ThreadingTCPServer):
    """A local server keeping what each connection sent (None: it was reset)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.got: list[bytes | None] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Keep)
        self.sock = self.socket
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()


class _Keep(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data: bytes | None = b""
        try:
            while chunk := self.request.recv(65536):
                data = (data or b"") + chunk
        except ConnectionResetError:
            data = None
        server = self.server
        assert isinstance(server, _Server)
        with server.lock:
            server.got.append(data)


def test_copies_interleaved_on_the_stream_arrive_whole_and_drops_count_once() -> None:
    server = _Server()
    events: list[RedirectEventInfo] = []
    stream = _Played([
        _message(_first(1, b"one-a "), _first(2, b"two-a "), _first(3, b"three-a ")),
        _message(pb.CopyChunk(copy_id=2, data=b"two-b", end=True),
                 pb.CopyChunk(copy_id=1, data=b"one-b ")),
        _message(pb.CopyChunk(copy_id=3, dropped="bytes missing from the copy: gap"),
                 pb.CopyChunk(copy_id=4, dropped="more than 8192 connections followed"),
                 pb.CopyChunk(copy_id=1, data=b"one-c", end=True)),
    ])
    receiver = CopyReceiver(stream, [], 7, lambda original: server.sock.getsockname()[:2],
                            events.append, 2.0, lambda error: None)
    receiver.finish(10.0)
    by_id = {e.connection_id: e for e in events}
    assert len(events) == 4
    assert (by_id[1].route, by_id[1].bytes_in) == ("mirror", len(b"one-a one-b one-c"))
    assert (by_id[2].route, by_id[2].bytes_in) == ("mirror", len(b"two-a two-b"))
    assert by_id[3].route == by_id[4].route == "copy-dropped"
    assert "gap" in by_id[3].error and "8192" in by_id[4].error
    assert by_id[2].peer == ("10.0.0.2", 40002) and by_id[2].original == ("10.0.0.1", 8080)
    pause = threading.Event()
    for _ in range(200):
        with server.lock:
            if len(server.got) == 3:
                break
        pause.wait(0.05)
    with server.lock:
        got = list(server.got)
    assert sorted(g for g in got if g is not None) == [b"one-a one-b one-c", b"two-a two-b"]
    assert got.count(None) == 1  # copy 3: reset, never a clean end
    server.shutdown()
    server.server_close()


def test_a_refused_operator_side_drops_each_copy_once_and_ignores_its_later_pieces() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    refused = closed.getsockname()[:2]
    closed.close()
    events: list[RedirectEventInfo] = []
    stream = _Played([_message(_first(1, b"a")),
                      _message(pb.CopyChunk(copy_id=1, data=b"b")),
                      _message(pb.CopyChunk(copy_id=1, data=b"c", end=True))])
    receiver = CopyReceiver(stream, [], 7, lambda original: refused, events.append, 2.0,
                            lambda error: None)
    receiver.finish(10.0)
    assert [(e.connection_id, e.route) for e in events] == [(1, "copy-dropped")]
    assert "refused" in events[0].error


def test_a_copy_with_nowhere_to_go_is_dropped_once_and_its_later_pieces_ignored() -> None:
    events: list[RedirectEventInfo] = []
    stream = _Played([_message(_first(1, b"a"), _first(2, b"x")),
                      _message(pb.CopyChunk(copy_id=1, data=b"b"),
                               pb.CopyChunk(copy_id=2, dropped="gap")),
                      _message(pb.CopyChunk(copy_id=1, data=b"c", end=True))])
    receiver = CopyReceiver(stream, [], 7, lambda original: {9000: ("127.0.0.1", 9)}[
        original[1]], events.append, 2.0, lambda error: None)
    receiver.finish(10.0)
    assert [(e.connection_id, e.route, e.error) for e in events] == [
        (1, "copy-dropped", "no operator-side address for port 8080"),
        (2, "copy-dropped", "no operator-side address for port 8080")]
    assert receiver._gone == set()


def test_a_manager_without_a_copy_stream_is_refused_clearly() -> None:
    from kdiag.errors import ManagerError
    from kdiag.session.redirect import RedirectHandle
    from kdiag.session.results import RedirectSpec

    class _Call:
        def __init__(self, requests: Iterator[Any]) -> None:
            self._events = iter([pb.RedirectEvent(ready=pb.RedirectReady(redirect_id=3))])

        def __iter__(self) -> _Call:
            return self

        def __next__(self) -> pb.RedirectEvent:
            return next(self._events)

        def cancel(self) -> None:
            pass

    class _Client:
        unix_path = ""
        metadata: list[tuple[str, str]] = []

        def open_redirect(self, requests: Iterator[Any]) -> _Call:
            return _Call(requests)

        def tunnel(self) -> Any:
            raise AssertionError("no tunnel for a mirror the manager cannot carry")

    handle = RedirectHandle(_Client(), RedirectSpec("incoming", [8080], mirror=True),
                            ("127.0.0.1", 9), None, 1.0)
    with pytest.raises(ManagerError, match="older than this kdiag"):
        handle._start()
