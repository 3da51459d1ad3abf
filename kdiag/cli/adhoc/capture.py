"""``kdiag capture``: packets of the target's network namespace as a live pcap stream, to a
file or to stdout (``-w -``), flushed as they arrive, so that
``kdiag capture deploy/api -f 'port 8080' -w - | tcpdump -r -`` (or ``wireshark -k -i -``)
shows them while they come. tcpdump runs in the manager's container (its image), never in the
app's: distroless pods need nothing uploaded.

Ends at a limit (``-c``, ``--duration``, ``--max-bytes``) with exit 0; on Ctrl-C (or SIGTERM)
tcpdump is stopped gracefully, what it still holds is written, and the stream ends on a packet
boundary: a valid pcap; exit 130. A reader that goes away (EPIPE) ends it quietly, exit 0.
Messages go to stderr (stdout may be the pcap).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from typing import Any, BinaryIO

from kdiag.cli.adhoc.targeting import open_session
from kdiag.cli.interrupts import interrupt_on_sigterm
from kdiag.errors import EXIT_INTERRUPTED, EXIT_OK, UsageError
from kdiag.waiting import wait_event

UNLIMITED = 1 << 62
"""``max_bytes`` for no limit (the manager's own default bounds a capture step's file)."""

STOP_WAIT = 10.0
"""After Ctrl-C: how long tcpdump may take to flush and end."""


def _note(text: str) -> None:
    print(f"kdiag: {text}", file=sys.stderr, flush=True)


class _Announced(threading.Event):
    """Set once tcpdump listens; says so first, from the thread that then writes the packets:
    the line comes before any byte of the stream (a reader that takes a few bytes and leaves
    may end the capture at once)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self._line = line

    def set(self) -> None:
        if not self.is_set():
            _note(self._line)
        super().set()


class _Capture:
    """The capture running in a worker thread (the main thread waits for Ctrl-C)."""

    def __init__(self, manager: Any, out: BinaryIO, args: argparse.Namespace) -> None:
        self.stop = threading.Event()
        self.started = _Announced(f"capturing on {args.interface or 'any'}"
                                  + (f" ({args.filter})" if args.filter else "")
                                  + "; Ctrl-C to stop")
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._manager = manager
        self._out = out
        self._args = args

    def run(self) -> None:
        args = self._args
        try:
            self.result = self._manager.capture(
                self._out, args.filter or "", interface=args.interface or "",
                max_packets=args.count, max_bytes=args.max_bytes or UNLIMITED,
                duration=args.duration, snaplen=args.snaplen, stop=self.stop,
                started=self.started)
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end (True) — in short slices, so that Ctrl-C is seen at once."""
        return wait_event(self.done, timeout)


def _parse_size(text: str | None) -> int:
    if not text:
        return 0
    from kdiag.session.output import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"--max-bytes {text!r}: {exc}") from None


def _output(path: str) -> tuple[BinaryIO, bool]:
    """The pcap's destination: stdout's bytes for ``-``, else the file (and whether ours)."""
    if path == "-":
        if sys.stdout.isatty():
            raise UsageError("-w -: stdout is a terminal; pipe it (| tcpdump -r -) or name a "
                             "file")
        return sys.stdout.buffer, False
    try:
        return open(path, "wb"), True
    except OSError as exc:
        raise UsageError(f"-w {path}: {exc.strerror or exc}") from None


def _reader_gone() -> None:
    """stdout's reader left: point stdout at /dev/null, so that nothing more (Python's own
    flush at exit) fails on it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def command(args: argparse.Namespace) -> int:
    """Stream the capture until a limit, Ctrl-C or the reader's end."""
    args.max_bytes = _parse_size(args.max_bytes)
    out, owned = _output(args.write)
    interrupt_on_sigterm()
    try:
        with open_session(args) as session:
            if session.fleet() is not None:
                raise UsageError("capture takes one pod (no --all)")
            capture = _Capture(session.manager, out, args)
            threading.Thread(target=capture.run, daemon=True, name="capture").start()
            return _follow(capture, args)
    finally:
        if owned:
            out.close()


def _follow(capture: _Capture, args: argparse.Namespace) -> int:
    try:
        capture.wait()
    except KeyboardInterrupt:
        capture.stop.set()  # tcpdump flushes what it holds: the pcap ends whole
        with contextlib.suppress(KeyboardInterrupt):
            capture.wait(STOP_WAIT)
        _summary(capture)
        return EXIT_INTERRUPTED
    if isinstance(capture.error, BrokenPipeError) or (
            isinstance(capture.error, OSError) and args.write == "-"):
        _reader_gone()
        return EXIT_OK
    if capture.error is not None:
        raise capture.error
    _summary(capture)
    return EXIT_OK


def _summary(capture: _Capture) -> None:
    result = capture.result
    if result is None:
        _note("capture stopped")
        return
    _note(f"capture ended ({result.reason}): {result.packets} packets, {result.bytes} bytes"
          + (f"; tcpdump: {result.error}" if result.error else ""))
