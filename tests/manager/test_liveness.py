"""A live session stays alive however often others check it (each check is a connection)."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys

from kdiag_manager import liveness


def test_many_checks_do_not_make_a_live_session_look_dead() -> None:
    session = f"test-{secrets.token_hex(4)}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from kdiag_manager import liveness; "
         f"liveness.hold({session!r}); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert all(liveness.is_alive(session) for _ in range(100))
    finally:
        holder.kill()
        holder.wait()
    assert not liveness.is_alive(session)


def test_a_holder_too_busy_to_accept_is_still_alive() -> None:
    """Checks in a burst can fill the holder's backlog before it accepts: a full backlog
    (EAGAIN) means someone holds the session, never that it is dead."""
    session = f"test-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as busy:
        busy.bind(liveness._PREFIX + session)
        busy.listen(1)  # never accepts
        assert all(liveness.is_alive(session) for _ in range(10))
    assert not liveness.is_alive(session)
