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


def _insert(ns: str, client_port: int, state: str, answered_from: int) -> None:
    """An entry for CLIENT:client_port → APP:8080 in ``state``, its replies coming from
    ``answered_from`` (a listener's port: translated; 8080: not)."""
    subprocess.run(["ip", "netns", "exec", ns, "conntrack", "-I", "-p", "tcp", "-s", CLIENT,
                    "-d", APP, "--sport", str(client_port), "--dport", "8080", "--state", state,
                    "--timeout", "100", "-r", APP, "-q", CLIENT, "--reply-port-src",
                    str(answered_from), "--reply-port-dst", str(client_port)],
                   check=True, capture_output=True)


def _forget(ns: str, client_ports: list[int]) -> list[int]:
    """Run ``conntrack.forget`` in ``ns``; the client ports of the flows it left for later."""
    code = ("import json; from kdiag_manager import conntrack as c; "
            f"late = c.forget([(({CLIENT!r}, p), ({APP!r}, 8080)) for p in {client_ports!r}]); "
            "print(json.dumps([f[0][1] for f in late]))")
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], check=True,
                         capture_output=True, text=True).stdout
    return list(json.loads(out))


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
