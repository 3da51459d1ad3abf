"""``conntrack.forget`` against the kernel's connection tracking, in a network namespace of its
own: entries made with the ``conntrack`` tool, forgotten through our ctnetlink code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("conntrack") is None,
                                reason="needs root and the conntrack tool")

CLIENT, APP, LISTENER = "10.9.0.2", "10.9.0.1", 45678


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kd-ct{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _insert(ns: str, client_port: int, state: str, answered_from: int, timeout: int = 100
            ) -> None:
    """An entry for CLIENT:client_port → APP:8080 in ``state``, its replies coming from
    ``answered_from`` (a listener's port: translated; 8080: not), expiring in ``timeout`` s
    (what a reset leaves: 10 s, whatever the state it kept)."""
    subprocess.run(["ip", "netns", "exec", ns, "conntrack", "-I", "-p", "tcp", "-s", CLIENT,
                    "-d", APP, "--sport", str(client_port), "--dport", "8080", "--state", state,
                    "--timeout", str(timeout), "-r", APP, "-q", CLIENT, "--reply-port-src",
                    str(answered_from), "--reply-port-dst", str(client_port)],
                   check=True, capture_output=True)


def _forget(ns: str, client_ports: list[int]) -> list[int]:
    """Run ``conntrack.forget`` in ``ns``; the client ports of the flows it left for later."""
    return list(_in(ns, "late = c.forget([(({CLIENT!r}, p), ({APP!r}, 8080)) for p in "
                        f"{client_ports!r}]); print(json.dumps([f[0][1] for f in late]))"))


def _in(ns: str, code: str) -> object:
    """Run ``code`` (``c`` is our conntrack module) in ``ns``; what it printed, as JSON."""
    code = ("import json; from kdiag_manager import conntrack as c; "
            + code.replace("{CLIENT!r}", repr(CLIENT)).replace("{APP!r}", repr(APP)))
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def _left(ns: str) -> set[int]:
    out = subprocess.run(["ip", "netns", "exec", ns, "conntrack", "-L", "-p", "tcp"],
                         check=True, capture_output=True, text=True).stdout
    return {int(line.split("sport=")[1].split()[0]) for line in out.splitlines() if "sport=" in line}


def test_a_reset_entry_goes_a_live_looking_one_waits(netns: str) -> None:
    """CLOSE (the reset seen) is deleted; ESTABLISHED (the reset not seen yet, or conntrack kept
    the state after it) and SYN_SENT (a new connection from the same port took the entry over)
    are left for a later try: deleting a live connection's entry would cut its translation."""
    _insert(netns, 40001, "CLOSE", LISTENER)
    _insert(netns, 40002, "ESTABLISHED", LISTENER)
    _insert(netns, 40003, "SYN_SENT", LISTENER)
    assert _forget(netns, [40001, 40002, 40003, 40004]) == [40002, 40003]  # (40004: none)
    assert _left(netns) == {40002, 40003}


def test_a_reset_conntrack_kept_established_is_deleted_by_its_timeout(netns: str) -> None:
    """A reset whose sequence number is not the peer's last acknowledgement leaves the state as
    it was (ESTABLISHED, CLOSE_WAIT, ...) with the CLOSE timeout (10 s): such an entry is dead
    and deleted. A handshake or TIME_WAIT with that little time left is not (a new connection
    from the port took it over; TIME_WAIT a SYN replaces anyway); nor ESTABLISHED with a live
    connection's timeout."""
    _insert(netns, 40011, "ESTABLISHED", LISTENER, timeout=9)
    _insert(netns, 40012, "CLOSE_WAIT", LISTENER, timeout=10)
    _insert(netns, 40013, "SYN_RECV", LISTENER, timeout=9)
    _insert(netns, 40014, "TIME_WAIT", LISTENER, timeout=9)
    _insert(netns, 40015, "ESTABLISHED", LISTENER, timeout=300)
    assert _forget(netns, [40011, 40012, 40013, 40014, 40015]) == [40013, 40014, 40015]
    assert _left(netns) == {40013, 40014, 40015}


def test_a_stopping_redirect_sweeps_only_what_saw_a_reset(netns: str) -> None:
    """``forget_translated(reset_only=True)`` (a redirect's stop): entries translated to the
    listener that saw a reset last; not live ones, nor entries of other ports."""
    _insert(netns, 40021, "CLOSE", LISTENER)
    _insert(netns, 40022, "ESTABLISHED", LISTENER, timeout=9)
    _insert(netns, 40023, "ESTABLISHED", LISTENER)
    _insert(netns, 40024, "CLOSE", 8080)  # not translated
    _insert(netns, 40025, "CLOSE", LISTENER + 1)
    assert _in(netns, f"print(c.forget_translated({{{LISTENER}}}, reset_only=True))") == 2
    assert _left(netns) == {40023, 40024, 40025}
    assert _in(netns, f"print(c.forget_translated({{{LISTENER}}}))") == 1  # (the exit's sweep)
    assert _left(netns) == {40024, 40025}
