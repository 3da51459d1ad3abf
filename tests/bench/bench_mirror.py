"""Mirror benchmarks in node mode (needs root): ``python -m tests.bench.run mirror``.

- latency: p50 of requests (a new connection each, and all on one keep-alive connection) to an
  app under a mirror (copies to a draining server on this host) against the same app on a port
  without one (best round of each, taking turns);
- CPU: the manager's CPU seconds per 1000 mirrored requests (new connections), and the CLI's
  (this process: the copy stream's reader and the connections to the operator's server), which
  hold whatever the machine's load.

The peers are separate processes (``manager_peers``) so that only the CLI's side of the mirror
shares this process. ``run(record)`` follows tests/bench/run.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

from tests.bench.manager_peers import app_with_manager, cpu_seconds, pct, peer, result

Record = Callable[..., None]

# The app listens on both ports; only the first is mirrored.
APP_PORT, APP_PLAIN_PORT = 8080, 8081
MIRROR_SAMPLES = 400
MIRROR_ROUNDS = 3
FIGURES = ("manager.mirror_latency_ms", "manager.mirror_latency_ratio",
           "manager.mirror_keepalive_latency_ms", "manager.mirror_keepalive_latency_ratio",
           "manager.mirror_cpu_s_per_1000", "manager.mirror_cli_cpu_s_per_1000")


def run(record: Record) -> None:
    """Measure and record every figure (skipped with a message when not root)."""
    if os.geteuid() != 0:
        from tests.bench.figures import Unmeasurable

        raise Unmeasurable("needs root (network namespaces)")
    with app_with_manager(APP_PORT, APP_PLAIN_PORT) as (ns, session, manager_pid, procs):
        _mirror_latency(record, session, ns, procs, manager_pid)


def _mirror_latency(record: Record, session: Any, ns: str,
                    procs: list[subprocess.Popen[str]], manager_pid: int) -> None:
    """p50 of requests to the app under a mirror against the app without one (best round of
    each, taking turns); the copies go to a server that reads them to their end. And the
    manager's and the CLI's CPU seconds per 1000 mirrored requests (new connections)."""
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
            cpu, cli_cpu = cpu_seconds(manager_pid), time.process_time()
            direct, via = _p50_pair(ns, kind == "_keepalive")
            if not kind:  # (the plain rounds between cost the manager nothing)
                per = 1000 / (MIRROR_ROUNDS * MIRROR_SAMPLES)
                record("manager.mirror_cpu_s_per_1000", (cpu_seconds(manager_pid) - cpu) * per,
                       "s", "", None,
                       sides=("the manager's CPU time (user + system) while the mirrored "
                              "new-connection rounds ran, per 1000 requests (each copied)"))
                record("manager.mirror_cli_cpu_s_per_1000", (time.process_time() - cli_cpu)
                       * per, "s", "", None,
                       sides=("the CLI's CPU time (this process: the copy stream and the "
                              "connections to the operator's server) over the same rounds, "
                              "per 1000 requests"))
            record(f"manager.mirror{kind}_latency_ms", via, "ms", "", direct)
            record(f"manager.mirror{kind}_latency_ratio", via / direct, "x",
                   "<= 1.3" if not kind else "", direct,
                   sides=(f"p50 of {MIRROR_SAMPLES} GETs, {how}, from the target's namespace "
                          "to an app port under a mirror (the connections go to the app "
                          "straight; the manager takes a copy from the packets and sends it "
                          "to this process, which sends it to a server on this host that "
                          "drains it) ÷ the same to a port of the same app without "
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
