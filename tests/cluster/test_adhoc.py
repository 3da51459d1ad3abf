"""The ad-hoc commands against the local cluster: `kdiag ps`, `shell` (a command, a script on
standard input, and an interactive TTY through a pseudo-terminal), `redirect` with no ports
(every listening port), `forward`, and `logs -- COMMAND`; `kubectl kdiag` is the same CLI."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Kdiag, Pods

pytestmark = pytest.mark.cluster


def _target(pods: Pods, pod: str = "testapp") -> list[str]:
    return ["-n", pods.namespace, "--pod", pod]


def test_ps_and_shell(example_pods: Pods, kdiag_cli: Kdiag) -> None:
    ps = kdiag_cli("ps", *_target(example_pods))
    assert ps.returncode == 0, ps.output
    assert "tcp6:8080" in ps.stdout and "*/testapp -listen=:8080" in ps.stdout
    one = kdiag_cli("shell", "-n", example_pods.namespace, "-l", "app=testapp", "--",
                    "sh", "-c", "ls /; exit 7")
    assert one.returncode == 7 and "testapp" in one.stdout.split(), one.output
    script = kdiag_cli("shell", *_target(example_pods), stdin="echo $((6*7)); test -e /bin/sh "
                       "|| echo no-shell-here\n")
    assert script.returncode == 0 and script.stdout.split() == ["42", "no-shell-here"], \
        script.output


def test_interactive_shell_on_a_tty(example_pods: Pods, kdiag_cli: Kdiag) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: kdiag shell on the pseudo-terminal
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "kdiag", "shell",
                                   *_target(example_pods)], kdiag_cli.env)
    out = b""

    def read_until(marker: bytes, timeout: float = 30) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while marker not in out:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {marker!r} in {out!r}")
            try:
                out += os.read(fd, 4096)
            except OSError:
                break

    try:
        read_until(b"# ")
        if b"\x1b[6n" in out:  # ash asks the terminal where the cursor is: answer like one
            os.write(fd, b"\x1b[1;5R")
            time.sleep(0.5)  # let it take the answer before the command is typed
        os.write(fd, b"echo tty=$([ -t 0 ] && echo yes || echo no) sum=$((2+3))\r")
        read_until(b"sum=5")
        assert b"tty=yes" in out, out
        os.write(fd, b"exit 4\r")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 4, out
    finally:
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
            if needle in line:
                return line
    raise AssertionError(f"no {needle!r} in: {seen}")


def _start(kdiag_cli: Kdiag, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kdiag", *args], cwd=REPO, env=kdiag_cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_redirect_every_port_and_forward(example_pods: Pods, kdiag_cli: Kdiag,
                                         tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, str(REPO / "runbooks/lib/recording_server.py"),
                               "8080", "hello from the adhoc test"], stdout=subprocess.DEVNULL)
    forward = redirect = None
    try:
        # No ports: every port the app listens on (8080), to the same local port.
        redirect = _start(kdiag_cli, "redirect", *_target(example_pods))
        _wait_for_line(redirect, "redirecting incoming 8080 -> 127.0.0.1:8080")
        forward = _start(kdiag_cli, "forward", *_target(example_pods, "testapp-client"),
                         "8081:0")
        line = _wait_for_line(forward, "Forwarding from 127.0.0.1:")
        local = int(line.split("127.0.0.1:")[1].split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/call", timeout=20) as resp:
            assert b"hello from the adhoc test" in resp.read()
        _wait_for_line(redirect, "connection ")
        assert _stop(redirect) == 130
        assert "the redirect rules are removed" in (redirect.stdout.read() if redirect.stdout
                                                    else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/call", timeout=20) as resp:
            assert b"hello from app" in resp.read()  # the app answers again
        assert _stop(forward) == 130
    finally:
        for proc in (forward, redirect, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_logs_around_a_command(example_pods: Pods, kdiag_cli: Kdiag) -> None:
    forward = _start(kdiag_cli, "forward", *_target(example_pods, "testapp-client"), "8081:0")
    try:
        line = _wait_for_line(forward, "Forwarding from 127.0.0.1:")
        local = int(line.split("127.0.0.1:")[1].split()[0])
        result = kdiag_cli("logs", "-n", example_pods.namespace, "-l",
                           "app in (testapp, testapp-client)", "-c", "all", "--drain", "1s",
                           "--", sys.executable, "-c",
                           "import sys, urllib.request; urllib.request.urlopen("
                           f"'http://127.0.0.1:{local}/call?adhoc=1', timeout=20).read(); "
                           "sys.exit(5)")
        assert result.returncode == 5, result.output
        assert "[testapp-client/client] " in result.stdout and "/call?adhoc=1" in result.stdout
        assert "[testapp/app] " in result.stdout and "/from-client" in result.stdout
    finally:
        _stop(forward)


def test_kubectl_plugin_name(example_pods: Pods, kdiag_cli: Kdiag, tmp_path: Path) -> None:
    plugin = Path(sys.executable).parent / "kubectl-kdiag"
    result = subprocess.run([str(plugin), "ps", *_target(example_pods)], env=kdiag_cli.env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "/testapp" in result.stdout, result.stdout + result.stderr
    usage = subprocess.run([str(plugin), "shell"], env=kdiag_cli.env, capture_output=True,
                           text=True, timeout=60, check=False)
    assert usage.returncode == 2 and usage.stderr.startswith("kubectl kdiag: error:"), usage


def test_forward_carries_concurrent_connections_intact(example_pods: Pods,
                                                       kdiag_cli: Kdiag) -> None:
    """400 HTTP calls, 8 at once, through `kdiag forward`: each gets its own whole answer.
    Each connection is its own port-forward (a TLS connection to the API server); one ending
    while another opens must never hand one connection's bytes to the other (seen before the
    fix: TLS records ahead of an HTTP answer, 2 of 400)."""
    from concurrent.futures import ThreadPoolExecutor

    forward = _start(kdiag_cli, "forward", *_target(example_pods), "8080:0")
    try:
        line = _wait_for_line(forward, "Forwarding from 127.0.0.1:")
        local = int(line.split("127.0.0.1:")[1].split()[0])

        def call(n: int) -> bytes:
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/echo?n={n}",
                                        timeout=60) as resp:
                return resp.read()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(400)))
        wrong = [(n, a[:60]) for n, a in enumerate(answers)
                 if not a.startswith(f"GET /echo?n={n} HTTP/1.1\n".encode())]
        assert not wrong, f"{len(wrong)} of 400 answers not their own: {wrong[:3]}"
        assert _stop(forward) == 130
    finally:
        if forward.poll() is None:
            forward.kill()
            forward.wait()
