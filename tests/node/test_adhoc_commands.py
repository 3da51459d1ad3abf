"""The ad-hoc commands against a node target (``--pid``), as a user runs them: ``kdiag ps``
(``--all``), ``kdiag shell`` (a command, a script on standard input, the exit code), ``kdiag
redirect`` (incoming to ``--to HOST``, ``--outgoing``, every listening port when none is named),
each checked for its effect."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo.lab import Lab

from .conftest import ENTER, exchange, in_netns, reply_with, tcp_server

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "KDIAG_ENTER": str(ENTER)}


def kdiag(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kdiag", *args], capture_output=True, text=True,
                          input=stdin, cwd=ROOT, env=_env(), timeout=120)


def _ps_rows(output: str) -> dict[int, str]:
    rows = {}
    for line in output.splitlines()[1:]:
        pid = line.split(None, 1)[0] if line.strip() else ""
        if pid.isdigit():  # not the continuation of a command line holding a newline
            rows[int(pid)] = line
    return rows


def test_ps_lists_the_targets_processes_and_all_of_them_with_all(app: Lab) -> None:
    mine = kdiag("ps", "--pid", str(app.app_pid))
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.splitlines()[0].split() == ["PID", "PPID", "USER", "LISTEN", "COMMAND"]
    rows = _ps_rows(mine.stdout)
    assert "tcp:8080" in rows[app.app_pid] and "*/app 8080" in rows[app.app_pid]
    assert os.getpid() not in rows  # the test runs in another network namespace
    everything = kdiag("ps", "--pid", str(app.app_pid), "--all-processes")
    assert everything.returncode == 0, everything.stderr
    all_rows = _ps_rows(everything.stdout)
    assert os.getpid() in all_rows and app.app_pid in all_rows
    assert len(all_rows) > len(rows)


def test_shell_runs_a_command_or_a_script_in_the_target_with_its_exit_code(app: Lab) -> None:
    listing = kdiag("shell", "--pid", str(app.app_pid), "--", "ls", "/")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split() == ["app", "proc"]  # the target's root, not this host's
    failing = kdiag("shell", "--pid", str(app.app_pid), "--", "false")
    assert failing.returncode == 1
    script = kdiag("shell", "--pid", str(app.app_pid), stdin="echo from-stdin; exit 4\n")
    assert script.returncode == 4 and script.stdout == "from-stdin\n", script.stderr


@contextmanager
def _redirect(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``kdiag redirect ARGS`` until the block ends, then Ctrl-C: exit 130, rules removed."""
    process = subprocess.Popen([sys.executable, "-m", "kdiag", "redirect", *args], cwd=ROOT,
                               env=_env(), text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line == "Ctrl-C to stop\n":  # after the line saying what is redirected
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not ready.wait(0.1):
            assert process.poll() is None and time.monotonic() < deadline, \
                f"kdiag redirect did not start: {lines} {process.stderr.read() if process.stderr else ''}"
        process.lines = lines  # type: ignore[attr-defined]
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        reader.join(5)
    assert code == 130, "".join(lines)
    assert "stopped; the redirect rules are removed\n" in lines


def test_redirect_incoming_goes_to_the_to_host(app: Lab) -> None:
    # The operator's server listens on 127.0.0.2 only: reached only if --to is used.
    with tcp_server(reply_with(b"operator:"), host="127.0.0.2") as (_, port), \
            _redirect("--pid", str(app.app_pid), "--to", "127.0.0.2",
                      f"8080:{port}") as process:
        assert process.lines[-2:] == [f"redirecting incoming 8080 -> 127.0.0.2:{port}\n",
                                      "Ctrl-C to stop\n"]
        with in_netns(app.client_ns):
            assert exchange((app.app_ip, 8080), b"hi") == b"operator:hi"
        assert app.tagged_rules()
    assert app.tagged_rules() == []
    with in_netns(app.client_ns):
        assert exchange((app.app_ip, 8080), b"hi") == b"app:hi"


def test_redirect_outgoing_sends_the_targets_connections_here(app: Lab) -> None:
    # Nothing listens on the client's 9000: only the redirect can answer.
    with tcp_server(reply_with(b"operator:")) as (_, port), \
            _redirect("--pid", str(app.app_pid), "--outgoing", f"9000:{port}"), \
            in_netns(app.app_ns):
        assert exchange((app.client_ip, 9000), b"out") == b"operator:out"
    assert app.tagged_rules() == []


def test_redirect_without_ports_takes_every_port_the_target_listens_on(app: Lab) -> None:
    # Every listening port goes to the same port here (on --to's host: 127.0.0.3, so as not
    # to need this host's own 8080).
    server = socket.create_server(("127.0.0.3", 8080))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(10)
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                conn.sendall(b"operator:" + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with _redirect("--pid", str(app.app_pid), "--to", "127.0.0.3") as process:
            assert "redirecting incoming 8080 -> 127.0.0.3:8080" in process.lines[-2]
            with in_netns(app.client_ns):
                assert exchange((app.app_ip, 8080), b"all") == b"operator:all"
    finally:
        stop.set()
        thread.join(5)
        server.close()
    assert app.tagged_rules() == []
