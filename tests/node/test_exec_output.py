"""Exec output through the real manager: nothing lost, memory bounded, background children."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

from .conftest import Lab

LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
SIZE = 200_000_000
MANAGER_MAX_RSS_KB = 80 * 1024
READER_RATE = 40e6  # bytes/s; busybox prints several times faster


def _expected_sha256(size: int) -> str:
    """SHA-256 of ``yes LINE | head -c size`` without holding it in memory."""
    digest = hashlib.sha256()
    block = LINE * (1 << 14)
    left = size
    while left >= len(block):
        digest.update(block)
        left -= len(block)
    digest.update(block[:left])
    return digest.hexdigest()


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def test_200_mb_of_output_arrive_whole_with_bounded_manager_memory(app: Lab,
                                                                   node_session) -> None:
    """A command printing 200 MB to a client that reads slower than it prints: every byte
    arrives (count and SHA-256), the command waits for the client (flow control), and the
    manager's memory stays bounded (its peak RSS, VmHWM, ≤ 80 MB)."""
    manager_pid = node_session.info["manager_pid"]
    digest = hashlib.sha256()
    received = {"stdout": 0, "stderr": 0}
    rss_samples: list[int] = []
    chunks: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            rss_samples.append(_status_kb(manager_pid, "VmRSS"))

    def consume(kind: str, data: bytes) -> None:
        received[kind] += len(data)
        chunks.append(len(data))
        if kind == "stdout":
            digest.update(data)
            # A slow reader (at most READER_RATE): the manager must wait for it, not buffer.
            ahead = received["stdout"] / READER_RATE - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()  # (read by consume)
    try:
        result = node_session.manager.exec(
            script=f"yes {LINE.decode().strip()} | head -c {SIZE}", capture=False,
            on_output=consume)
    finally:
        done.set()
        sampler.join()
    elapsed = time.monotonic() - t0
    peak = _status_kb(manager_pid, "VmHWM")
    facts = (f"{received} in {len(chunks)} messages, {elapsed:.1f}s; manager peak RSS "
             f"{peak / 1024:.1f} MB (samples up to {max(rss_samples, default=0) / 1024:.1f} MB)")
    assert result.exit_code == 0, facts
    assert received == {"stdout": SIZE, "stderr": 0}, facts
    assert digest.hexdigest() == _expected_sha256(SIZE), facts
    assert peak <= MANAGER_MAX_RSS_KB, facts


def test_background_children_neither_hold_the_call_nor_lose_late_output(
        app: Lab, node_session) -> None:
    """The main process exits while a background child still holds the pipes: output the
    child writes shortly after is kept; a child that stays silent does not hold the call.
    (On the host, in the target's network namespace: the app's root has no /dev/null, which
    ash needs for background jobs.)"""
    t0 = time.monotonic()
    result = node_session.manager.exec(
        script="(sleep 0.5; sh -c 'echo late $$; exec sleep 30') & echo early", host=True)
    elapsed = time.monotonic() - t0
    assert result.exit_code == 0
    early, late, child = result.stdout.split()
    os.kill(int(child), signal.SIGKILL)
    assert (early, late) == (b"early", b"late")
    assert elapsed < 10, f"the call took {elapsed:.1f}s"
    # stderr is drained the same way
    result = node_session.manager.exec(script="(sleep 0.3; echo late >&2) & echo early >&2",
                                       host=True)
    assert result.stderr == b"early\nlate\n"
