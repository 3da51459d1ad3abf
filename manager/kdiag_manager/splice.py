"""A connection that stays local (failed open, not matching a header filter, a ``101`` or
``CONNECT`` tunnel), relayed to its upstream by the kernel relay of :mod:`.handoff`: half-closes
pass on, a reset on either side resets both at once, and the sockets are closed after (with a
reset, when the relay ended by one: never a clean end for a cut connection).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .handoff import relay
from .wire.sockets import abort, close_cleanly


@dataclass
class SpliceResult:
    """Bytes copied each way and whether either side reset."""

    a_to_b: int = 0
    b_to_a: int = 0
    reset: bool = False


def _on_a_thread(fn: Callable[..., Any], *args: Any) -> None:
    threading.Thread(target=fn, args=args, daemon=True, name="splice").start()


def splice(a: socket.socket, b: socket.socket, initial: bytes = b"") -> SpliceResult:
    """Copy ``a`` ⇄ ``b`` until both directions finish; send ``initial`` to ``b`` first.

    Blocks the calling thread (one extra thread does the other direction); closes both sockets.
    """
    relayed = relay(a, b, initial, _on_a_thread)
    for sock in (a, b):
        if relayed.error:
            abort(sock)
        else:
            close_cleanly(sock)
    return SpliceResult(relayed.to_operator, relayed.from_operator, bool(relayed.error))
