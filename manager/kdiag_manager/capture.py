"""Capture: packets of the target's network namespace as a pcap stream, via tcpdump.

The manager already lives in the target's network namespace, so tcpdump sees its interfaces.
The stream is cut at packet boundaries, so a byte limit still leaves a valid pcap file.
"""

from __future__ import annotations

import os
import queue
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from .config import Config
from .wire.api.v1 import manager_pb2 as pb

PCAP_HEADER = 24
RECORD_HEADER = 16


class PcapCutter:
    """Splits a pcap byte stream into whole records, counting packets and bytes."""

    def __init__(self) -> None:
        self.buf = b""
        self.header_done = False
        self.endian = "<"
        self.packets = 0
        self.bytes = 0

    def feed(self, data: bytes, max_packets: int = 0, max_bytes: int = 0) -> tuple[bytes, bool]:
        """Add ``data``; return the complete bytes to emit and whether a limit was reached."""
        self.buf += data
        out = bytearray()
        if not self.header_done:
            if len(self.buf) < PCAP_HEADER:
                return b"", False
            magic = self.buf[:4]
            self.endian = ">" if magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d") else "<"
            out += self.buf[:PCAP_HEADER]
            self.buf = self.buf[PCAP_HEADER:]
            self.header_done = True
            self.bytes += PCAP_HEADER
        while len(self.buf) >= RECORD_HEADER:
            (incl,) = struct.unpack(self.endian + "I", self.buf[8:12])
            size = RECORD_HEADER + incl
            if len(self.buf) < size:
                break
            if (max_packets and self.packets >= max_packets) or \
                    (max_bytes and self.bytes + size > max_bytes):
                return bytes(out), True
            out += self.buf[:size]
            self.buf = self.buf[size:]
            self.packets += 1
            self.bytes += size
        limit = bool(max_packets and self.packets >= max_packets)
        return bytes(out), limit


# Chunks (of up to 64 KiB) read from tcpdump and not yet sent: a slow reader at the other end
# (a live capture into Wireshark) makes tcpdump wait, and the kernel drop packets (tcpdump
# counts them), instead of the manager's memory growing.
QUEUED_CHUNKS = 256

_STARTED = b"<started>"
"""Put in the chunk queue when tcpdump says it is listening (a distinct object, not data)."""


def _reader(fd: int, out: queue.Queue[bytes | None]) -> None:
    try:
        while data := os.read(fd, 65536):
            out.put(data)
    except OSError:
        pass
    out.put(None)


def _drain(chunks: queue.Queue[bytes | None]) -> None:
    """Read what tcpdump still writes after the stream ended, so that it can exit."""
    while chunks.get() is not None:
        pass


def _stderr_reader(stream: Any, out: queue.Queue[bytes | None], lines: list[str]) -> None:
    """Collect tcpdump's messages; its "listening on" line means packets are being captured."""
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").strip()
        if "listening on" in line:
            out.put(_STARTED)
        elif line and "data link type" not in line and "packets" not in line:
            lines.append(line)


def _watch_controls(controls: Iterator[pb.CaptureControl], stopped: threading.Event,
                    stop: Any) -> None:
    """A ``stop`` from the client ends the capture gracefully (tcpdump flushes, then exits)."""
    try:
        for message in controls:
            if message.WhichOneof("msg") == "stop":
                stopped.set()
                stop()
                return
    except Exception:  # the call ended: the context callback stops tcpdump
        return


def build_command(req: pb.CaptureRequest, config: Config) -> list[str]:
    """The tcpdump command line for ``req``."""
    # --immediate-mode: libpcap otherwise hands packets over in blocks (up to a second late),
    # and a capture stopped in between would lose them. -Z root: the image may have no
    # tcpdump user.
    cmd = [config.tcpdump_path, "-i", req.interface or "any", "--immediate-mode", "-U", "-w",
           "-", "-n", "-Z", "root"]
    if req.snaplen:
        cmd += ["-s", str(req.snaplen)]
    if req.max_packets:
        cmd += ["-c", str(req.max_packets)]
    if req.filter:
        cmd.append(req.filter)
    return cmd


def run(controls: Iterator[pb.CaptureControl], config: Config, context: Any
        ) -> Iterator[pb.CaptureChunk]:
    """Run tcpdump until a limit, a ``stop`` or the end of the call; stream whole records.

    A ``started`` message says when tcpdump listens, so the client knows from when on
    packets are caught.
    """
    first = next(controls, None)
    if first is None or first.WhichOneof("msg") != "start":
        yield pb.CaptureChunk(done=pb.CaptureDone(reason="error", error="no capture request"))
        return
    req = first.start
    max_bytes = req.max_bytes or config.max_capture_bytes
    try:
        proc = subprocess.Popen(build_command(req, config), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        yield pb.CaptureChunk(done=pb.CaptureDone(reason="error", error=f"tcpdump: {exc}"))
        return
    assert proc.stdout is not None and proc.stderr is not None

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # tcpdump flushes and exits

    context.add_callback(stop)
    chunks: queue.Queue[bytes | None] = queue.Queue(QUEUED_CHUNKS)
    messages: list[str] = []
    stopped = threading.Event()
    threading.Thread(target=_reader, args=(proc.stdout.fileno(), chunks), daemon=True).start()
    threading.Thread(target=_stderr_reader, args=(proc.stderr, chunks, messages),
                     daemon=True).start()
    threading.Thread(target=_watch_controls, args=(controls, stopped, stop), daemon=True).start()
    cutter = PcapCutter()
    deadline = time.monotonic() + req.duration_seconds if req.duration_seconds else None
    reason = "ended"
    eof = False  # tcpdump's output ended (read to the end)
    try:
        while True:
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if deadline is not None and wait <= 0:
                reason = "duration"
                break
            try:
                data = chunks.get(timeout=max(wait, 0.001))
            except queue.Empty:
                if not context.is_active():
                    reason = "cancelled"
                    break
                continue
            if data is _STARTED:
                yield pb.CaptureChunk(started=True)
                continue
            if data is None:
                eof = True
                reason = "stopped" if stopped.is_set() else "packets" if req.max_packets and \
                    cutter.packets >= req.max_packets else "ended"
                break
            out, limited = cutter.feed(data, req.max_packets, max_bytes)
            if out:
                yield pb.CaptureChunk(data=out)
            if limited:
                reason = "packets" if req.max_packets and \
                    cutter.packets >= req.max_packets else "bytes"
                break
    finally:
        stop()
        if not eof and reason != "duration":  # (after a duration: sent below)
            threading.Thread(target=_drain, args=(chunks,), daemon=True).start()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Records tcpdump flushed while stopping at the duration still count.
    if reason == "duration":
        while (data := chunks.get()) is not None:
            if data is _STARTED:
                continue
            out, limited = cutter.feed(data, req.max_packets, max_bytes)
            if out:
                yield pb.CaptureChunk(data=out)
            if limited:
                break
    error = "" if proc.returncode in (0, -signal.SIGINT, 130) or reason != "ended" \
        else "\n".join(messages)
    yield pb.CaptureChunk(done=pb.CaptureDone(packets=cutter.packets, bytes=cutter.bytes,
                                              reason=reason, error=error))
