"""The gRPC channel's own socket in node mode (a unix socket): a wider send buffer (the lane's
unix socket gets the same).

gRPC sets no buffer size on a unix socket, so the kernel default (``net.core.wmem_default``,
208 KiB here) caps what one write can queue of a 2 MiB tunnel message: the sender's gRPC
event-engine thread then sleeps and wakes ~17 times per MB, and so does the receiver's.
With SEND_BUFFER it is ~6 times per MB, and the redirect benchmark's throughput ratio went
0.22 → 0.24-0.26 (3 runs each, alternating). Over TCP (a pod, via port-forward) the kernel
grows the buffers by itself. gRPC Python has no socket mutator, so the socket is found among
the process's file descriptors by its address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

# The kernel doubles it (for its bookkeeping) and caps it at net.core.wmem_max.
SEND_BUFFER = 4 << 20

TRANSPORT_OPTIONS = [
    # A large initial flow-control window instead of BDP probing: tunnels are bulk byte
    # streams and per-message round trips dominate (measured: ~2x throughput).
    ("grpc.http2.lookahead_bytes", 4 << 20),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.optimization_target", "latency"),
    # Both ends ping every 0.3 s when idle and give up after 1 s without an answer: a path that hangs
    # without closing (a laptop asleep or off the network, a frozen API server in between) ends
    # the connection within ~1.3 s, and with it the manager's redirects (fail-open) and the
    # CLI's calls (the run fails with the cause). A ping is 17 bytes each way.
    ("grpc.keepalive_time_ms", 300),
    ("grpc.keepalive_timeout_ms", 1_000),
    # gRPC core waits for a ping's answer this long (default: a minute), keepalive or not:
    # without it the timeout above is not applied (measured: a frozen peer went unnoticed).
    ("grpc.http2.ping_timeout_ms", 1_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.max_send_message_length", 16 << 20),
]
"""gRPC options both ends of the manager connection use (the CLI's channel, the server)."""


def widen_send_buffer(sock: socket.socket) -> None:
    """SO_SNDBUF = SEND_BUFFER on a unix stream socket carrying bulk data (the lane's, in node
    mode: a 208 KiB buffer made each 1 MiB message block and wake both ends several times).
    Best effort."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


def widen_send_buffers(path: str, *, peer: bool = False) -> int:
    """Set SO_SNDBUF on this process's connected unix stream sockets bound to ``path``
    (``peer``: connected to ``path``); return how many. Best effort: errors are skipped."""
    widened = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(ValueError, OSError):
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:  # closes the duplicate only
                if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                    continue
                local, remote = sock.getsockname(), sock.getpeername()  # OSError: a listener
                if (remote if peer else local) != path:
                    continue
                widen_send_buffer(sock)
                widened += 1
    return widened
