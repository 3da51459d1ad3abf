"""Copy bytes between two sockets in both directions, propagating half-close and resets.

Used for connections that stay local: failed open, or not matching a header filter.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

from .wire.sockets import abort

CHUNK = 64 * 1024


@dataclass
class SpliceResult:
    """Bytes copied each way and whether either side reset."""

    a_to_b: int = 0
    b_to_a: int = 0
    reset: bool = False


def _pump(src: socket.socket, dst: socket.socket, result: SpliceResult, forward: bool,
          failed: threading.Event) -> None:
    total = 0
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                dst.shutdown(socket.SHUT_WR)  # half-close: pass the FIN on
                break
            dst.sendall(data)
            total += len(data)
    except OSError:
        result.reset = True
        failed.set()
        # Reset propagates: abort both so the other pump and both peers see it.
        for s in (src, dst):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    if forward:
        result.a_to_b = total
    else:
        result.b_to_a = total


def splice(a: socket.socket, b: socket.socket, initial: bytes = b"") -> SpliceResult:
    """Copy ``a`` ⇄ ``b`` until both directions finish; send ``initial`` to ``b`` first.

    Blocks the calling thread (one extra thread does the other direction); closes both sockets.
    """
    result = SpliceResult()
    failed = threading.Event()
    try:
        if initial:
            b.sendall(initial)
    except OSError:
        abort(a)
        abort(b)
        return SpliceResult(reset=True)
    t = threading.Thread(target=_pump, args=(b, a, result, False, failed), daemon=True)
    t.start()
    _pump(a, b, result, True, failed)
    t.join()
    result.a_to_b += len(initial)
    a.close()
    b.close()
    return result
