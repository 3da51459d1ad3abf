"""The programs the manager benchmarks run as separate processes, and helpers to start them.

Every peer role is one small program, ``python -c PEER ROLE ...``, so that only the tunnel
pumps share the benchmark's own process (as they do in the CLI). Roles:

- ``serve``: a server on 127.0.0.1, first byte of a connection picks what it does: ``S`` sink
  (read to EOF, answer the count), ``E`` echo, ``G<n>\\n`` send n bytes and close;
- ``send HOST PORT N``: one transfer of N bytes to a sink, timed;
- ``lat HOST PORT N``: N new connections with a 1-byte echo round trip each, timed;
- ``hold HOST PORT N``: N open echo connections until stdin closes;
- ``load HOST PORT CONNS SIZE``: CONNS connections at once, half sending SIZE bytes to a sink,
  half receiving SIZE bytes (``G``); every byte counted;
- ``httpapp [ADDRESS:]PORT...``: an HTTP/1.1 keep-alive server on each port (on 127.0.0.1
  unless an address is given; a thread per connection, the request head parsed, a small
  response in one write), until stdin ends;
- ``keepalive HOST PORT N [HEADER]``: N requests over one keep-alive connection with the
  standard library's ``http.client``, timed;
- ``drain``: a server on 127.0.0.1 that reads each connection to its end and closes it (a
  mirror's operator side);
- ``reqlat HOST PORT N [keep]``: N GETs, each on a new connection (``keep``: all on one
  keep-alive connection), each timed (head and body read).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PEER = r'''
import json, os, socket, sys, threading, time
role = sys.argv[1]
if role == "serve":
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0)); srv.listen(1024)
    print(srv.getsockname()[1], flush=True)
    out = b"y" * (1 << 20)
    def handle(c):
        try:
            kind = c.recv(1)
            if kind == b"S":
                n = 0
                while True:
                    d = c.recv(1 << 20)
                    if not d: break
                    n += len(d)
                c.sendall(str(n).encode())
            elif kind == b"G":
                n = int(c.makefile("rb").readline())
                while n > 0:
                    k = min(n, len(out)); c.sendall(out[:k]); n -= k
            else:
                while True:
                    d = c.recv(65536)
                    if not d: break
                    c.sendall(d)
        except OSError:
            pass  # the client counts what arrived
        c.close()
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
if role == "httpapp":
    def handle(c):
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d: return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(l.split(":", 1) for l in lines[1:])
                length = int(headers.get("Content-Length", 0))
                while len(buf) < length:
                    buf += c.recv(65536)
                buf = buf[length:]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
    def accept(s):
        while True:
            c, _ = s.accept()
            threading.Thread(target=handle, args=(c,), daemon=True).start()
    for p in sys.argv[2:]:
        bind, _, p = p.rpartition(":")
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((bind or "127.0.0.1", int(p))); s.listen(128)
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    print("READY", flush=True); sys.stdin.read()
    sys.exit(0)
if role == "drain":
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0)); srv.listen(1024)
    print(srv.getsockname()[1], flush=True)
    def handle(c):
        try:
            while c.recv(1 << 16): pass
        except OSError:
            pass
        c.close()
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
host, port = sys.argv[2], int(sys.argv[3])
if role == "send":
    n = int(sys.argv[4]); buf = b"x" * (1 << 20)
    t0 = time.perf_counter()
    s = socket.create_connection((host, port)); s.sendall(b"S")
    left = n
    while left > 0:
        k = min(left, len(buf)); s.sendall(buf[:k] if k < len(buf) else buf); left -= k
    s.shutdown(socket.SHUT_WR)
    got = int(s.recv(64)); dt = time.perf_counter() - t0
    assert got == n, (got, n)
    print(json.dumps({"seconds": dt}))
elif role == "lat":
    out = []
    for _ in range(int(sys.argv[4])):
        t0 = time.perf_counter()
        s = socket.create_connection((host, port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"E!"); assert s.recv(1) == b"!"
        out.append(time.perf_counter() - t0); s.close()
    print(json.dumps({"samples": out}))
elif role == "hold":
    socks = []
    for _ in range(int(sys.argv[4])):
        s = socket.create_connection((host, port)); s.sendall(b"E!"); assert s.recv(1) == b"!"
        socks.append(s)
    print("READY", flush=True); sys.stdin.read()
elif role == "load":
    conns, size = int(sys.argv[4]), int(sys.argv[5])
    barrier = threading.Barrier(conns); errors = []; buf = b"x" * (1 << 20)
    def one(i):
        try:
            s = socket.create_connection((host, port))
            barrier.wait(60)
            if i % 2 == 0:
                s.sendall(b"S"); left = size
                while left > 0:
                    k = min(left, len(buf)); s.sendall(buf[:k]); left -= k
                s.shutdown(socket.SHUT_WR)
                got = int(s.recv(64) or b"-1")
            else:
                s.sendall(b"G%d\n" % size); got = 0
                while True:
                    d = s.recv(1 << 20)
                    if not d: break
                    got += len(d)
            s.close()
            if got != size: errors.append(f"connection {i}: {got} of {size} bytes")
        except Exception as exc:
            errors.append(f"connection {i}: {exc!r}")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    t0 = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps({"seconds": time.perf_counter() - t0, "errors": errors}))
elif role == "reqlat":
    out = []; keep = len(sys.argv) > 5 and sys.argv[5] == "keep"; s = None
    req = b"GET / HTTP/1.1\r\nHost: app\r\n\r\n"
    for i in range(int(sys.argv[4]) + 20):
        t0 = time.perf_counter()
        if s is None:
            s = socket.create_connection((host, port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(req); got = b""
        while not got.endswith(b"ok"):
            d = s.recv(65536)
            assert d, got
            got += d
        if i >= 20: out.append(time.perf_counter() - t0)  # the first 20 warm up
        if not keep: s.close(); s = None
    print(json.dumps({"samples": out}))
elif role == "keepalive":
    import http.client
    n = int(sys.argv[4])
    headers = dict([sys.argv[5].split(":", 1)]) if len(sys.argv) > 5 else {}
    c = http.client.HTTPConnection(host, port, timeout=30)
    for i in range(n + 20):
        if i == 20: t0 = time.perf_counter()  # the first 20 warm up
        c.request("GET", "/", headers=headers)
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"ok", r.status
    print(json.dumps({"rps": n / (time.perf_counter() - t0)}))
'''


@contextlib.contextmanager
def app_with_manager(*app_ports: int) -> Iterator[tuple[str, Any, int, list[subprocess.Popen[str]]]]:
    """The keep-alive app (``httpapp`` on ``app_ports``) in a network namespace of its own,
    and a node-mode session with a manager beside it: (namespace, session, the manager's PID,
    the peer processes to end afterwards: more can be added). Needs root."""
    from kdiag.targets.node import NodeTarget

    ns = f"kdb-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        target = peer(ns, "httpapp", *map(str, app_ports), stdin=subprocess.PIPE)
        procs.append(target)
        assert target.stdout is not None
        if target.stdout.readline().strip() != "READY":
            raise RuntimeError("the bench app did not start")
        session = NodeTarget(target.pid).open()
        try:
            manager_pid = int(session.info["manager_pid"])
            session.manager.version()
            time.sleep(0.5)
            yield ns, session, manager_pid, procs
        finally:
            session.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def peer(netns: str | None, *args: str, **kw: Any) -> subprocess.Popen[str]:
    """Start a peer role (in network namespace ``netns`` when given)."""
    prefix = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []
    return subprocess.Popen([*prefix, sys.executable, "-c", PEER, *args], text=True,
                            stdout=subprocess.PIPE, **kw)


def result(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    """The JSON a peer printed last (RuntimeError if it failed)."""
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bench peer failed ({proc.returncode})")
    return dict(json.loads(out.strip().splitlines()[-1]))


def keepalive_best(netns: str | None, host: str, plain_port: int, filtered_port: int,
                   requests: int, rounds: int) -> tuple[float, float]:
    """The best requests/s over one keep-alive connection to ``plain_port`` and to
    ``filtered_port`` of ``host`` (rounds taking turns): (plain, filtered)."""
    plains, filtereds = [], []
    for _ in range(rounds):
        for port, out in ((plain_port, plains), (filtered_port, filtereds)):
            out.append(float(result(peer(netns, "keepalive", host, str(port),
                                         str(requests)))["rps"]))
    return max(plains), max(filtereds)


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (MiB, as /proc counts)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(samples: list[float], q: float) -> float:
    """The ``q`` quantile of ``samples`` (seconds), in ms."""
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000
