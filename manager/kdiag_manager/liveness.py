"""Which kdiag sessions still have a live manager in this network namespace.

A manager holds an abstract unix socket ``@kdiag-manager/<session>`` for each session it has
rules for. Abstract sockets belong to the network namespace (like the rules) and vanish with the
process, even after ``kill -9``: a tagged rule whose session socket refuses connections is stale.
The holder accepts (and drops) every check's connection: a full backlog would make a live
session look dead to the next check, and its rules be removed.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from .iptables import Iptables, Rule

_PREFIX = "\0kdiag-manager/"
_held: dict[str, socket.socket] = {}
_holders: dict[str, int] = {}  # how many of this process's rule sets hold each session
_lock = threading.Lock()


def hold(session: str) -> None:
    """Mark ``session`` as alive for as long as this process lives (or until as many
    :func:`release` calls as ``hold`` calls)."""
    with _lock:
        _holders[session] = _holders.get(session, 0) + 1
        if session in _held:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(_PREFIX + session)
        except OSError:
            sock.close()  # another live manager holds it: the session is alive anyway
            return
        sock.listen(64)
        _held[session] = sock
    threading.Thread(target=_answer_checks, args=(sock,), daemon=True,
                     name=f"liveness-{session}").start()


def _answer_checks(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:  # released: closed under us
            return
        conn.close()


def release(session: str) -> None:
    """One holder of ``session`` is done (its rules are gone): after the last one, stop
    marking the session as alive."""
    with _lock:
        left = _holders.get(session, 0) - 1
        if left > 0:
            _holders[session] = left
            return
        _holders.pop(session, None)
        sock = _held.pop(session, None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes the thread answering checks
        sock.close()


def is_alive(session: str) -> bool:
    """Does some process in this network namespace hold ``session``'s socket?"""
    with _lock:
        if session in _holders:
            return True
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(1)
        sock.connect(_PREFIX + session)
    except (BlockingIOError, TimeoutError):
        return True  # a listener whose backlog is full (checks in a burst): someone holds it
    except OSError:
        return False  # refused or absent: nobody holds it
    finally:
        sock.close()
    return True


def remove_stale_rules(iptables: Iptables) -> list[Rule]:
    """Remove every tagged rule whose session has no live manager; return what was removed."""
    rules = iptables.tagged()
    sessions = {r.session for r in rules if r.session is not None}
    dead = {s for s in sessions if not is_alive(s)}
    return [r for r in rules if r.session in dead and iptables.delete(r)]
