"""Manager benchmarks in node mode, measured side by side in one run (needs root).

- redirect throughput: one connection through an outgoing redirect (target netns → manager →
  tunnel on the lane → this process → a sink), against the same transfer straight over
  loopback; once as the machine is, once with ``stress-ng --cpu 2`` beside it (``_busy``);
- connection setup latency through an established redirect (connect, 1-byte round trip), p50
  and p99, against a direct connect;
- the manager's RSS idle and with 100 open tunnels;
- keep-alive through a header-filtered redirect: requests/s over one keep-alive connection
  (``http.client``) to an HTTP/1.1 app in the target, for requests without the header (they
  go to the app through the manager's router), against the same app on a port without a
  redirect;
- memory under load: the manager's peak RSS while 200 connections each move 4 MiB through a
  redirect at once (half each way), and its RSS once they have ended;
- mirror latency: p50 of requests (a new connection each, and all on one keep-alive
  connection) to the app under a mirror (copies to a draining server on this host) against the
  same app on a port without one; and the manager's CPU seconds per 1000 mirrored requests.

The peers are separate processes (``manager_peers``) so that only the tunnel pumps share this
process (as they do in the CLI). ``run(record)`` follows tests/bench/run.py.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

from tests.bench.manager_peers import cpu_seconds, keepalive_best, pct, peer, result, rss_mb

Record = Callable[..., None]

TRANSFER_BYTES = 256 << 20
# Throughput: one unmeasured warm-up transfer each way, then the best of ROUNDS alternating
# transfers each way. The machine is shared (2 cores, a cluster in the background): the
# redirected transfer takes longer than the direct one, so it is the likelier to be hit by a
# burst of other work; more rounds let both reach their undisturbed value.
ROUNDS = 5
LATENCY_SAMPLES = 400
TUNNELS = 100
REDIRECT_PORT = 9000
# Keep-alive: the app listens on both ports, only the first is redirected (header filter).
APP_PORT, APP_PLAIN_PORT = 8080, 8081
KEEPALIVE_REQUESTS = 400
KEEPALIVE_ROUNDS = 5
HEADER = ("X-Kdiag-Session", "bench")
# Memory under load.
LOAD_CONNECTIONS = 200
LOAD_BYTES = 4 << 20
SETTLE_SECONDS = 1.0  # after the load, before "after" is read
# The busy figure: a CPU hog on every core beside the transfers.
STRESS = ["stress-ng", "--cpu", "2", "--quiet", "--timeout", "600"]  # (ended after use)
FIGURES = ("manager.rss_idle", "manager.redirect_throughput", "manager.redirect_throughput_ratio",
           "manager.connect_latency_p50", "manager.connect_latency_p99",
           "manager.rss_100_tunnels", "manager.header_filter_keepalive_rps",
           "manager.header_filter_keepalive_ratio", "manager.rss_peak_load_mb",
           "manager.rss_after_load_mb", "manager.redirect_throughput_ratio_busy",
           "manager.mirror_latency_ms", "manager.mirror_latency_ratio",
           "manager.mirror_keepalive_latency_ms", "manager.mirror_keepalive_latency_ratio",
           "manager.mirror_cpu_s_per_1000")


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def run(record: Record) -> None:
    """Measure and record every figure (skipped with a message when not root)."""
    if os.geteuid() != 0:
        from tests.bench.figures import Unmeasurable

        raise Unmeasurable("needs root (network namespaces)")
    from kdiag.targets.node import NodeTarget

    ns = f"kdb-{secrets.token_hex(3)}"
    _sh("ip", "netns", "add", ns)
    procs: list[subprocess.Popen[str]] = []
    try:
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        # The target: the keep-alive app, in its own network namespace.
        target = peer(ns, "httpapp", str(APP_PORT), str(APP_PLAIN_PORT), stdin=subprocess.PIPE)
        procs.append(target)
        assert target.stdout is not None
        if target.stdout.readline().strip() != "READY":
            raise RuntimeError("the bench app did not start")
        server = peer(None, "serve")
        procs.append(server)
        assert server.stdout is not None
        port = int(server.stdout.readline())
        session = NodeTarget(target.pid).open()
        try:
            manager_pid = int(session.info["manager_pid"])
            session.manager.version()
            time.sleep(0.5)
            record("manager.rss_idle", rss_mb(manager_pid), "MB", "<= 40", None)
            _through_redirect(record, session, ns, port, manager_pid, procs)
            _keepalive(record, session, ns, port)
            _load(record, session, ns, port, manager_pid)
            _mirror_latency(record, session, ns, procs, manager_pid)
            _busy_throughput(record, session, ns, port)
        finally:
            session.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


_THROUGHPUT_SIDES = (
    f"a process in the target's namespace sends {TRANSFER_BYTES >> 20} MiB to a port an "
    "outgoing redirect catches (manager → tunnel on the lane → this process → a sink process) ÷ "
    f"the same sender to the same sink straight over loopback; best of {ROUNDS} rounds each, "
    "taking turns")


def _transfers(ns: str, port: int) -> tuple[float, float]:
    """Seconds of the best direct and the best redirected transfer (alternating rounds)."""
    directs, vias = [], []
    for i in range(ROUNDS + 1):  # round 0 warms both paths up: not counted
        d = float(result(peer(None, "send", "127.0.0.1", str(port),
                              str(TRANSFER_BYTES)))["seconds"])
        v = float(result(peer(ns, "send", "127.0.0.1", str(REDIRECT_PORT),
                              str(TRANSFER_BYTES)))["seconds"])
        if i:
            directs.append(d)
            vias.append(v)
    return min(directs), min(vias)


def _through_redirect(record: Record, session: Any, ns: str, port: int, manager_pid: int,
                      procs: list[subprocess.Popen[str]]) -> None:
    """Throughput, connection setup and RSS with open tunnels, through one outgoing redirect."""
    from kdiag.session.results import RedirectSpec

    handle = session.manager.redirect(RedirectSpec("outgoing", [REDIRECT_PORT], fail_open=False),
                                      ("127.0.0.1", port))
    try:
        direct, via = _transfers(ns, port)
        mb = TRANSFER_BYTES / 1e6
        record("manager.redirect_throughput", mb / via, "MB/s", "", mb / direct)
        record("manager.redirect_throughput_ratio", direct / via, "x", ">= 0.4", mb / direct,
               sides=_THROUGHPUT_SIDES)
        d = result(peer(None, "lat", "127.0.0.1", str(port), str(LATENCY_SAMPLES)))["samples"]
        r = result(peer(ns, "lat", "127.0.0.1", str(REDIRECT_PORT),
                        str(LATENCY_SAMPLES)))["samples"]
        record("manager.connect_latency_p50", pct(r, 0.5), "ms", "<= 2", pct(d, 0.5))
        record("manager.connect_latency_p99", pct(r, 0.99), "ms", "<= 5", pct(d, 0.99))
        hold = peer(ns, "hold", "127.0.0.1", str(REDIRECT_PORT), str(TUNNELS),
                    stdin=subprocess.PIPE)
        procs.append(hold)
        assert hold.stdout is not None and hold.stdin is not None
        if hold.stdout.readline().strip() != "READY":
            raise RuntimeError("tunnels did not open")
        time.sleep(0.5)
        record("manager.rss_100_tunnels", rss_mb(manager_pid), "MB", "<= 80", None)
        hold.stdin.close()
        hold.wait(30)
    finally:
        handle.close()


MIRROR_SAMPLES = 400
MIRROR_ROUNDS = 3


def _mirror_latency(record: Record, session: Any, ns: str,
                    procs: list[subprocess.Popen[str]], manager_pid: int) -> None:
    """p50 of requests to the app under a mirror against the app without one (best round of
    each, taking turns); the copies go to a server that reads them to their end. And the
    manager's CPU seconds per 1000 mirrored requests (new connections), which hold whatever
    the machine's load."""
    from kdiag.session.results import RedirectSpec

    drain = peer(None, "drain")
    procs.append(drain)
    assert drain.stdout is not None
    sink = int(drain.stdout.readline())
    handle = session.manager.redirect(RedirectSpec("incoming", [APP_PORT], mirror=True),
                                      ("127.0.0.1", sink))
    try:
        for kind, how in (("", "each on a new connection"),
                          ("_keepalive", "all on one keep-alive connection")):
            cpu = cpu_seconds(manager_pid)
            direct, via = _p50_pair(ns, kind == "_keepalive")
            if not kind:  # (the plain rounds between cost the manager nothing)
                cpu = cpu_seconds(manager_pid) - cpu
                record("manager.mirror_cpu_s_per_1000", cpu / (MIRROR_ROUNDS * MIRROR_SAMPLES)
                       * 1000, "s", "", None,
                       sides=("the manager's CPU time (user + system) while the mirrored "
                              "new-connection rounds ran, per 1000 requests (each copied)"))
            record(f"manager.mirror{kind}_latency_ms", via, "ms", "", direct)
            record(f"manager.mirror{kind}_latency_ratio", via / direct, "x",
                   "<= 1.3" if not kind else "", direct,
                   sides=(f"p50 of {MIRROR_SAMPLES} GETs, {how}, from the target's namespace "
                          "to an app port under a mirror (the connections go to the app "
                          "straight; the manager takes a copy from the packets and sends it "
                          "through a tunnel to a server on this host that drains it) ÷ the "
                          "same to a port of the same app without "
                          f"one; best of {MIRROR_ROUNDS} rounds each, taking turns"))
    finally:
        handle.close()


def _p50_pair(ns: str, keep: bool) -> tuple[float, float]:
    """The best p50 (ms) of requests to the plain port and to the mirrored one."""
    directs, vias = [], []
    for _ in range(MIRROR_ROUNDS):
        for app_port, out in ((APP_PLAIN_PORT, directs), (APP_PORT, vias)):
            samples = result(peer(ns, "reqlat", "127.0.0.1", str(app_port), str(MIRROR_SAMPLES),
                                  "keep" if keep else "new"))["samples"]
            out.append(pct(samples, 0.5))
    return min(directs), min(vias)


def _keepalive(record: Record, session: Any, ns: str, port: int) -> None:
    """Requests/s over one keep-alive connection: through a header-filtered redirect (requests
    without the header: the router sends them to the app) against the app directly."""
    from kdiag.session.results import RedirectSpec

    handle = session.manager.redirect(RedirectSpec("incoming", [APP_PORT], header=HEADER),
                                      ("127.0.0.1", port))
    try:
        direct, via = keepalive_best(ns, "127.0.0.1", APP_PLAIN_PORT, APP_PORT,
                                     KEEPALIVE_REQUESTS, KEEPALIVE_ROUNDS)
    finally:
        handle.close()
    record("manager.header_filter_keepalive_rps", via, "req/s", "", direct)
    record("manager.header_filter_keepalive_ratio", via / direct, "x", ">= 0.5", direct,
           sides=(f"requests/s of {KEEPALIVE_REQUESTS} GETs over one keep-alive connection "
                  "(http.client) from another namespace to an app port under a header-filtered "
                  "incoming redirect, without the header (the manager's router sends them to "
                  "the app) ÷ the same to a port of the same app without a redirect; best of "
                  f"{KEEPALIVE_ROUNDS} rounds each, taking turns"))


def _load(record: Record, session: Any, ns: str, port: int, manager_pid: int) -> None:
    """Peak RSS while LOAD_CONNECTIONS connections move LOAD_BYTES each at once; RSS after."""
    from kdiag.session.results import RedirectSpec

    # A burst of new connections on a busy machine may take a while to get tunnels: the
    # figure is about memory, so none of them should fail open or be reset meanwhile.
    handle = session.manager.redirect(RedirectSpec("outgoing", [REDIRECT_PORT], fail_open=False,
                                                   fail_open_timeout=60),
                                      ("127.0.0.1", port))
    try:
        load = peer(ns, "load", "127.0.0.1", str(REDIRECT_PORT), str(LOAD_CONNECTIONS),
                    str(LOAD_BYTES))
        peak = 0.0
        while load.poll() is None:
            peak = max(peak, rss_mb(manager_pid))
            time.sleep(0.01)
        outcome = result(load)
        if outcome["errors"]:
            raise RuntimeError(f"{len(outcome['errors'])} of {LOAD_CONNECTIONS} transfers "
                               f"failed: {outcome['errors'][:3]}")
    finally:
        handle.close()
    time.sleep(SETTLE_SECONDS)
    record("manager.rss_peak_load_mb", peak, "MB", "<= 100", None)
    record("manager.rss_after_load_mb", rss_mb(manager_pid), "MB", "<= 60", None)


def _busy_throughput(record: Record, session: Any, ns: str, port: int) -> None:
    """The throughput ratio again, with a CPU hog on every core beside it."""
    from kdiag.session.results import RedirectSpec

    if shutil.which(STRESS[0]) is None:
        print("  manager.redirect_throughput_ratio_busy: skipped (stress-ng not installed: "
              "make system-deps)")
        return
    handle = session.manager.redirect(RedirectSpec("outgoing", [REDIRECT_PORT], fail_open=False),
                                      ("127.0.0.1", port))
    stress = subprocess.Popen(STRESS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        direct, via = _transfers(ns, port)
    finally:
        stress.terminate()
        stress.wait(10)
        handle.close()
    mb = TRANSFER_BYTES / 1e6
    record("manager.redirect_throughput_ratio_busy", direct / via, "x", ">= 0.4", mb / direct,
           sides=_THROUGHPUT_SIDES + f", with `{' '.join(STRESS[:3])}` beside both")


if __name__ == "__main__":
    def _print(name: str, value: float, unit: str, target: str, baseline: float | None,
               sides: str = "") -> None:
        base = "" if baseline is None else f"  (baseline: {baseline:.3f})"
        print(f"{name:40s} {value:10.3f} {unit:6s} target {target}{base}")

    run(_print)
