"""`kdiag mirror` and `kdiag capture -w -` against the local cluster: a client pod's requests
are all answered by the app while copies reach a server on this machine (and with that server
stopped the answers are unchanged); tcpdump reads the live pcap stream while it runs."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .conftest import REPO
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Kdiag, Pods
from .test_adhoc import _start, _stop, _target, _wait_for_line

pytestmark = pytest.mark.cluster

N_REQUESTS = 1000


class _CopySink:
    """A TCP server on this machine that records the request lines of the copies it gets (the
    client pod keeps its connection to the app alive: one copy carries many requests)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        # A copy dropped (e.g. cut by the mirror's end while its keep-alive connection is
        # open) is reset, never ended cleanly: its requests read so far count.
        with conn, contextlib.suppress(ConnectionResetError):
            while data := conn.recv(65536):
                buf += data
                *lines, buf = buf.split(b"\r\n")
                found = [m.group(1).decode() for line in lines
                         if (m := re.match(rb"GET (/r/\S+) HTTP/1\.1$", line))]
                with self.lock:
                    self.paths += found

    def wait_for(self, n: int, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.paths) >= n:
                    break
            time.sleep(0.1)
        with self.lock:
            return list(self.paths)

    def close(self) -> None:
        self.sock.close()


@contextmanager
def _client_calls(kdiag_cli: Kdiag, pods: Pods) -> Iterator[int]:
    """A local port forwarded to the client pod's /call (the client calls the app)."""
    forward = _start(kdiag_cli, "forward", *_target(pods, "testapp-client"), "8081:0")
    try:
        line = _wait_for_line(forward, "Forwarding from 127.0.0.1:")
        yield int(line.split("127.0.0.1:")[1].split()[0])
    finally:
        _stop(forward)


def _call(local: int, app_ip: str, i: int) -> str:
    url = urllib.parse.quote(f"http://{app_ip}:8080/r/{i}", safe="")
    with urllib.request.urlopen(f"http://127.0.0.1:{local}/call?url={url}", timeout=30) as r:
        return r.read().decode()


def _calls(local: int, app_ip: str, ids: range) -> list[str]:
    # One at a time (the order of the copies is checked); concurrent calls through `kdiag
    # forward` are test_adhoc.py's test_forward_carries_concurrent_connections_intact.
    return [_call(local, app_ip, i) for i in ids]


@contextmanager
def _mirror(kdiag_cli: Kdiag, pods: Pods, port: int) -> Iterator[subprocess.Popen[str]]:
    mirror = _start(kdiag_cli, "mirror", *_target(pods), f"8080:{port}")
    try:
        _wait_for_line(mirror, "mirroring (the app serves", timeout=90)
        yield mirror
    finally:
        code = _stop(mirror)
        rest = mirror.stdout.read() if mirror.stdout else ""
    assert code == 130, rest
    assert "the mirror is closed (it installed no rules)" in rest, rest


APP_ANSWER = "200 hello from app\n\n"


def test_mirror_copies_every_request_and_the_app_answers(example_pods: Pods,
                                                         kdiag_cli: Kdiag) -> None:
    """1000 requests from the client pod: all answered by the app, and the server on this
    machine gets a copy of each; then, with that server stopped, the answers are unchanged."""
    sink = _CopySink()
    try:
        with _client_calls(kdiag_cli, example_pods) as local:
            baseline = _call(local, example_pods.app_ip, -1)
            assert baseline == APP_ANSWER, baseline
            with _mirror(kdiag_cli, example_pods, sink.port):
                answers = _calls(local, example_pods.app_ip, range(N_REQUESTS))
                copied = sink.wait_for(N_REQUESTS)
            assert answers == [APP_ANSWER] * N_REQUESTS
            assert sorted(copied) == sorted(f"/r/{i}" for i in range(N_REQUESTS))
            sink.close()  # the operator's server is gone: nothing listens on its port
            with _mirror(kdiag_cli, example_pods, sink.port):
                answers = _calls(local, example_pods.app_ip, range(200))
            assert answers == [APP_ANSWER] * 200
    finally:
        sink.close()


def test_live_capture_is_read_by_tcpdump_while_it_runs(example_pods: Pods,
                                                       kdiag_cli: Kdiag) -> None:
    """``kdiag capture --pod testapp -f 'tcp port 8080' -w - | tcpdump -r -``: tcpdump prints
    a packet of a call while the capture runs (nothing uploaded into the app's container: its
    image holds one binary); Ctrl-C: exit 130, tcpdump reads the stream to a clean end."""
    env = {k: v for k, v in kdiag_cli.env.items() if k != "PYTHONUNBUFFERED"}
    capture = subprocess.Popen([sys.executable, "-m", "kdiag", "capture",
                                *_target(example_pods), "-f", "tcp port 8080", "-w", "-"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert capture.stdout is not None and capture.stderr is not None
    reader = subprocess.Popen(["tcpdump", "-l", "-n", "-r", "-"], stdin=capture.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    capture.stdout.close()
    try:
        deadline = time.monotonic() + 90
        line = b""
        while b"capturing on" not in line:
            assert time.monotonic() < deadline and capture.poll() is None, line
            line = capture.stderr.readline()
        with _client_calls(kdiag_cli, example_pods) as local:
            assert _call(local, example_pods.app_ip, 1) == APP_ANSWER
            assert reader.stdout is not None
            got: list[bytes] = []
            thread = threading.Thread(target=lambda: got.append(reader.stdout.readline()),  # type: ignore[union-attr]
                                      daemon=True)
            thread.start()
            thread.join(30)
            assert got and b".8080" in got[0], got
            assert capture.poll() is None  # seen while the capture runs
    finally:
        capture.send_signal(signal.SIGINT)
        code = capture.wait(30)
        _out, errors = reader.communicate(timeout=30)
    assert code == 130, capture.stderr.read()
    assert reader.returncode == 0, errors
