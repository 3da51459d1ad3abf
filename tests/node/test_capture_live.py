"""``kdiag capture -w -``: a live pcap stream, read by tcpdump while it runs; Ctrl-C leaves a
valid pcap; a reader that goes away ends it quietly. The real manager (tcpdump in its mount
namespace, never in the target's root), real namespaces, the real tcpdump reading."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from .conftest import Lab, exchange, in_netns
from .test_adhoc_commands import ROOT, _env


def _kdiag_capture(app: Lab, *args: str, stdout: int | None = subprocess.PIPE
                   ) -> subprocess.Popen[bytes]:
    # Buffered stdout, as a user's shell gives it: the command itself must flush the stream.
    env = {k: v for k, v in _env().items() if k != "PYTHONUNBUFFERED"}
    return subprocess.Popen([sys.executable, "-m", "kdiag", "capture", "--pid",
                             str(app.app_pid), *args], cwd=ROOT, env=env, stdout=stdout,
                            stderr=subprocess.PIPE)


def _wait_started(capture: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    """The stderr line saying tcpdump listens (packets from then on are caught)."""
    assert capture.stderr is not None
    line = b""
    deadline = time.monotonic() + timeout
    while b"capturing on" not in line:
        assert time.monotonic() < deadline and capture.poll() is None, line
        line = capture.stderr.readline()
    return line.decode()


def _calls(app: Lab, stop: threading.Event) -> None:
    """Connections to the app until ``stop`` (each one: packets for the capture)."""
    with in_netns(app.client_ns):
        while not stop.is_set():
            assert exchange((app.app_ip, 8080), b"ping", timeout=10) == b"app:ping"
            time.sleep(0.05)


def _line_within(reader: subprocess.Popen[bytes], timeout: float) -> str:
    """tcpdump's first output line, if it comes within ``timeout`` seconds ("" if not)."""
    lines: list[bytes] = []
    assert reader.stdout is not None
    thread = threading.Thread(target=lambda: lines.append(reader.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    thread.start()
    thread.join(timeout)
    return lines[0].decode() if lines else ""


def _pcap_records(data: bytes) -> int:
    """The number of records of a pcap, which must end exactly on a record's end."""
    assert len(data) >= 24 and data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), data[:8]
    offset, records = 24, 0
    while offset < len(data):
        assert offset + 16 <= len(data), "cut in a record header"
        (incl,) = struct.unpack("<I", data[offset + 8:offset + 12])
        offset += 16 + incl
        assert offset <= len(data), "cut in a packet"
        records += 1
    return records


def test_tcpdump_reads_the_stream_while_it_runs(app: Lab) -> None:
    """``kdiag capture -f 'tcp port 8080' -w - | tcpdump -r -``: tcpdump prints packets of
    the connections while the capture still runs; Ctrl-C: exit 130, and tcpdump reads the
    stream to its end without complaint (a valid pcap)."""
    capture = _kdiag_capture(app, "-f", "tcp port 8080", "-w", "-")
    assert capture.stdout is not None
    reader = subprocess.Popen(["tcpdump", "-l", "-n", "-r", "-"], stdin=capture.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    capture.stdout.close()  # the reader holds it now
    try:
        assert "tcp port 8080" in _wait_started(capture)
        with in_netns(app.client_ns):  # a few packets only: far less than any buffer holds
            for _ in range(2):
                assert exchange((app.app_ip, 8080), b"ping", timeout=10) == b"app:ping"
        assert reader.stdout is not None
        line = _line_within(reader, 20.0)
        assert f"{app.app_ip}.8080" in line, line
        assert capture.poll() is None  # seen while the capture runs
    finally:
        capture.send_signal(signal.SIGINT)
        code = capture.wait(30)
        _rest, errors = reader.communicate(timeout=30)
    assert code == 130, capture.stderr.read() if capture.stderr else ""
    assert reader.returncode == 0, errors
    assert b"truncated" not in errors.lower() and b"bad dump" not in errors.lower(), errors


def test_ctrl_c_leaves_a_valid_pcap_file(app: Lab, tmp_path: Path) -> None:
    """``-w FILE``, Ctrl-C in the middle of traffic: the file is whole records, tcpdump reads
    every one, and the summary line counts the same packets."""
    out = tmp_path / "live.pcap"
    capture = _kdiag_capture(app, "-f", "tcp port 8080", "-w", str(out))
    stop = threading.Event()
    calls = threading.Thread(target=_calls, args=(app, stop), daemon=True)
    try:
        _wait_started(capture)
        calls.start()
        deadline = time.monotonic() + 30
        while (not out.exists() or out.stat().st_size < 2000) and time.monotonic() < deadline:
            time.sleep(0.05)  # the file grows while the capture runs
        assert out.stat().st_size >= 2000 and capture.poll() is None
    finally:
        capture.send_signal(signal.SIGINT)  # in the middle of the traffic
        code = capture.wait(30)
        stop.set()
        calls.join(10)
    errors = capture.stderr.read().decode() if capture.stderr else ""
    assert code == 130, errors
    records = _pcap_records(out.read_bytes())
    assert records > 0
    assert f"capture ended (stopped): {records} packets" in errors, errors
    read = subprocess.run(["tcpdump", "-n", "-r", str(out)], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert len(read.stdout.splitlines()) == records


def test_a_reader_that_goes_away_ends_it_quietly(app: Lab) -> None:
    """``kdiag capture -w - | head -c 100``: once head exits, the capture ends: exit 0, no
    traceback, no error message."""
    capture = _kdiag_capture(app, "-w", "-")
    assert capture.stdout is not None
    head = subprocess.Popen(["head", "-c", "100"], stdin=capture.stdout,
                            stdout=subprocess.DEVNULL)
    capture.stdout.close()
    stop = threading.Event()
    calls = threading.Thread(target=_calls, args=(app, stop), daemon=True)
    try:
        _wait_started(capture)
        calls.start()
        assert head.wait(30) == 0
        code = capture.wait(30)
    finally:
        stop.set()
        if calls.is_alive():
            calls.join(10)
        if capture.poll() is None:
            capture.kill()
    errors = capture.stderr.read().decode() if capture.stderr else ""
    assert code == 0, errors
    assert "Traceback" not in errors and "error" not in errors.lower(), errors


def test_stdout_terminal_is_refused(app: Lab) -> None:
    """``-w -`` onto a terminal would print binary: a usage error (exit 2), nothing started."""
    import pty

    leader, follower = pty.openpty()
    try:
        capture = _kdiag_capture(app, "-w", "-", stdout=follower)
        _, errors = capture.communicate(timeout=60)
    finally:
        import os

        os.close(leader)
        os.close(follower)
    assert capture.returncode == 2, errors
    assert b"stdout is a terminal" in errors
