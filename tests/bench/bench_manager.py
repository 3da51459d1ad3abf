"""Manager benchmarks in node mode, measured side by side in one run (needs root).

- redirect throughput: one connection through an outgoing redirect (target netns → manager →
  tunnel on the lane → this process → a sink; unless ``KDIAG_HANDOFF=0`` this process hands the
  sink-side socket to the manager, which relays it), against the same transfer straight over
  loopback; once as the machine is, once with ``stress-ng --cpu 2`` beside it (``_busy``);
- connection setup latency through an established redirect (connect, 1-byte round trip), p50
  and p99, against a direct connect;
- the manager's RSS idle and with 100 open tunnels;
- keep-alive through a header-filtered redirect: requests/s over one keep-alive connection
  (``http.client``) to an HTTP/1.1 app in the target, for requests without the header (they
  go to the app through the manager's router), against the same app on a port without a
  redirect;
- memory under load: the manager's peak RSS while 200 connections each move 4 MiB through a
  redirect at once (half each way), and its RSS once they have ended.

The mirror's figures are ``bench_mirror`` (``python -m tests.bench.run mirror``).

The peers are separate processes (``manager_peers``) so that only the tunnel pumps share this
process (as they do in the CLI). ``run(record)`` follows tests/bench/run.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

from tests.bench.manager_peers import app_with_manager, keepalive_best, pct, peer, result, rss_mb

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
           "manager.rss_after_load_mb", "manager.redirect_throughput_ratio_busy")


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def run(record: Record) -> None:
    """Measure and record every figure (skipped with a message when not root)."""
    if os.geteuid() != 0:
        from tests.bench.figures import Unmeasurable

        raise Unmeasurable("needs root (network namespaces)")
    # The target: the keep-alive app, in its own network namespace.
    with app_with_manager(APP_PORT, APP_PLAIN_PORT) as (ns, session, manager_pid, procs):
        server = peer(None, "serve")
        procs.append(server)
        assert server.stdout is not None
        port = int(server.stdout.readline())
        record("manager.rss_idle", rss_mb(manager_pid), "MB", "<= 40", None)
        _through_redirect(record, session, ns, port, manager_pid, procs)
        _keepalive(record, session, ns, port)
        _load(record, session, ns, port, manager_pid)
        _busy_throughput(record, session, ns, port)


_THROUGHPUT_SIDES = (
    f"a process in the target's namespace sends {TRANSFER_BYTES >> 20} MiB to a port an "
    "outgoing redirect catches (manager → tunnel on the lane → this process → a sink process; "
    "the manager relays to the sink itself unless KDIAG_HANDOFF=0) ÷ "
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
