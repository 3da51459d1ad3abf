"""Cluster faults (``--suite cluster``): the same faults as in node mode, against a pod on the
local cluster (kill -9 of the CLI, of the manager, of both; the operator-side server down and
back; 200 checked connections while the CLI is killed half-way), plus what only a cluster
has — the pod deleted under a background redirect, the API server killed and started again
(its connections closed at once), the API server frozen under a redirect (a vanished path:
nothing is closed, everything hangs).

Recovery is measured from the fault until a fresh connection from this host to the pod's IP
reaches the app; rules are counted in the pod's network namespace (nftables and iptables)
5 s after the fault at the latest. The manager lives on in the pod after its CLI dies (an
ephemeral container is never removed) and the next round's CLI reuses it; after a killed
manager the next round injects a new one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from . import scenarios
from .clusterlab import (
    ClusterEnv,
    PodCli,
    api_server_paused,
    api_server_stopped,
    cluster_env,
    start_cli,
    wait_ready,
)
from .nodelab import kill, wait_gone
from .registry import RULES_DEADLINE, RoundResult, register

KILL_ROUNDS = 20
POD = "app"
EXIT_DEADLINE = 2.0  # a lost pod ends the run within this (issue: exit 3 within 2 s)


def _kill_round(env: ClusterEnv, index: int, victims: str) -> RoundResult:
    """Start a CLI on the pod (``kdiag redirect`` or ``kdiag run``, in turns), kill
    ``victims`` (cli, manager, or both in a random order a random moment apart)."""
    cli = start_cli(env, POD, "redirect" if index % 2 == 0 else "run")
    problems: list[str] = []
    try:
        if not wait_ready(env, POD, cli):
            return RoundResult(None, 0, [f"the redirect did not come up: {cli.tail(3)}"])
        managers = env.manager_pids(POD)
        if len(managers) != 1:
            return RoundResult(None, 0, [f"{len(managers)} manager processes in the pod"])
        pids = {"cli": [cli.proc.pid], "manager": managers,
                "both": env.random.sample([cli.proc.pid, *managers], 2)}[victims]
        time.sleep(env.random.uniform(0, 0.3))
        t0 = time.monotonic()
        for n, pid in enumerate(pids):
            if n:
                time.sleep(env.random.uniform(0, 0.05))
            kill(pid)
        recovery = env.wait_route(env.pods[POD], "app", t0 + RULES_DEADLINE, since=t0)
        left = env.rules_left(POD, t0 + RULES_DEADLINE)
        if victims == "manager":  # its CLI must see it and end with exit 3 by itself
            problems += _ended_after_its_manager(env, cli, t0, run=index % 2 == 1)
        return RoundResult(recovery, left, problems)
    finally:
        cli.end()
        for pid in env.manager_pids(POD) if victims != "cli" else []:
            wait_gone(pid, time.monotonic() + 1)


def _ended_after_its_manager(env: ClusterEnv, cli: PodCli, t0: float, run: bool) -> list[str]:
    """What is wrong with how the CLI ended after its manager was killed at ``t0``: it must
    exit 3 by itself; a ``kdiag run`` (a background redirect, then a long ``wait``) within
    2 s of the kill, with its ``finally`` step run."""
    try:
        code = cli.proc.wait(max(t0 + RULES_DEADLINE - time.monotonic(), 0.1))
    except Exception:
        code = None
    took = time.monotonic() - t0
    if code != 3:
        return [f"the CLI did not end with exit 3 after its manager died (exit {code}): "
                f"{cli.tail()}"]
    if not run:
        return []
    problems = _finally_problems(env)
    if took > EXIT_DEADLINE:
        problems.append(f"the run ended {took:.2f} s after its manager was killed")
    return problems


@register("pod: kill -9 CLI", "cluster", KILL_ROUNDS, lambda: cluster_env("c"))
def kill_cli(env: ClusterEnv, index: int) -> RoundResult:
    """kill -9 of the CLI: the port-forward closes, the manager's streams end, it removes the
    redirect's table."""
    return _kill_round(env, index, "cli")


@register("pod: kill -9 manager", "cluster", KILL_ROUNDS, lambda: cluster_env("m"))
def kill_manager(env: ClusterEnv, index: int) -> RoundResult:
    """kill -9 of the manager in the pod: the kernel drops its owned tables."""
    return _kill_round(env, index, "manager")


@register("pod: kill -9 CLI + manager", "cluster", KILL_ROUNDS, lambda: cluster_env("b"))
def kill_both(env: ClusterEnv, index: int) -> RoundResult:
    """kill -9 of both, in a random order."""
    return _kill_round(env, index, "both")


@register("pod: deleted under a background redirect", "cluster", KILL_ROUNDS,
          lambda: cluster_env("d", pods=()), note="recovery: deletion → exit 3")
def pod_deleted(env: ClusterEnv, index: int) -> RoundResult:
    """A runbook keeps a redirect up in the background and waits; the pod is deleted: the run
    must end within 2 s with exit 3, its finally step run and the cause in the report."""
    name = f"victim{index}"
    env.start_pod(name)
    cli = start_cli(env, name, "run")
    try:
        if not wait_ready(env, name, cli):
            return RoundResult(None, 0, [f"the redirect did not come up: {cli.tail(3)}"])
        t0, wall = time.monotonic(), time.time()
        env.delete_pod(name)
        deleted = time.monotonic() - t0
        try:
            code = cli.proc.wait(10)
        except Exception:
            return RoundResult(None, 0, ["the run went on 10 s after its pod was deleted"])
        took = time.monotonic() - t0
        problems = []
        if code != 3:
            problems.append(f"exit {code}, not 3: {cli.tail()}")
        problems += _finally_problems(env)
        report = json.loads((env.tmpdir / "report.json").read_text())
        if f"pod {env.namespace}/{name}" not in json.dumps(report):
            problems.append("the report does not name the deleted pod")
        if took > EXIT_DEADLINE:  # where the time went: the API server, the watch, the CLI
            seen = [f["at"] - wall for run in report["runs"]
                    for f in run.get("background_failures", [])]
            problems.append(f"the run ended {took:.2f} s after the deletion (the delete call "
                            f"took {deleted:.2f} s, the CLI saw the loss at "
                            f"{min(seen, default=float('nan')):.2f} s)")
        return RoundResult(took if took <= EXIT_DEADLINE else None, 0, problems)
    finally:
        cli.end()


@register("pod: API server frozen under a redirect", "cluster", 5, lambda: cluster_env("a"),
          note="SIGSTOP 5 s; the path hangs")
def api_server_frozen(env: ClusterEnv, index: int) -> RoundResult:
    """The API server stops answering (SIGSTOP: the port-forward hangs, nothing is closed).
    The manager must notice its silent client and fail open within 2 s; the CLI must end
    with exit 3 naming the lost connection, a ``kdiag run`` with its finally step run."""
    return _api_server_round(env, index, api_server_paused)


@register("pod: API server killed and restarted under a redirect", "cluster", 5,
          lambda: cluster_env("k"), note="kill -9, started again as up.sh did")
def api_server_restarted(env: ClusterEnv, index: int) -> RoundResult:
    """The API server vanishes (kill -9: the port-forward and the pod watch are closed, new
    ones refused) and is started again with the same command line once the fault is measured.
    The manager must fail open within 2 s; the CLI must end with exit 3 naming the lost
    connection, a ``kdiag run`` with its finally step run."""
    return _api_server_round(env, index, api_server_stopped)


def _api_server_round(env: ClusterEnv, index: int,
                      fault: Callable[[], AbstractContextManager[object]]) -> RoundResult:
    """A CLI (``kdiag redirect`` or ``kdiag run``, in turns) redirects the pod; the API
    server ``fault`` lasts while recovery and the rules left are measured."""
    cli = start_cli(env, POD, "redirect" if index % 2 == 0 else "run")
    try:
        if not wait_ready(env, POD, cli):
            return RoundResult(None, 0, [f"the redirect did not come up: {cli.tail(3)}"])
        with fault():
            t0 = time.monotonic()
            recovery = env.wait_route(env.pods[POD], "app", t0 + RULES_DEADLINE, since=t0)
            left = env.rules_left(POD, t0 + RULES_DEADLINE)
        return RoundResult(recovery, left, _ended_with_loss(env, cli, index % 2 == 1))
    finally:
        cli.end()


def _ended_with_loss(env: ClusterEnv, cli: PodCli, run: bool) -> list[str]:
    """What is wrong with how the CLI ended after its connection to the pod was lost: it must
    exit 3; a ``kdiag run`` with its finally step run."""
    try:
        code = cli.proc.wait(30)
    except Exception:
        code = None
    if code != 3:
        return [f"the CLI did not end with exit 3 (exit {code}): {cli.tail()}"]
    return _finally_problems(env) if run else []


def _finally_problems(env: ClusterEnv) -> list[str]:
    """The run's report must show its finally step passed."""
    report = json.loads((env.tmpdir / "report.json").read_text())
    steps = {s["name"]: s["status"] for run in report["runs"] for s in run["steps"]}
    if steps.get("note #1 (finally)") != "passed":
        return [f"the finally step did not run: {steps}"]
    return []


@contextlib.contextmanager
def _running_redirect() -> Iterator[scenarios.Running]:
    with cluster_env("o") as env:
        cli = start_cli(env, POD, "redirect")
        try:
            if not wait_ready(env, POD, cli):
                raise RuntimeError(f"the redirect did not come up: {cli.tail(3)}")
            yield scenarios.Running(env.bench(POD), cli.proc)
        finally:
            cli.end()


@register("pod: operator server down and back", "cluster", KILL_ROUNDS, _running_redirect)
def operator_down(setup: scenarios.Running, index: int) -> RoundResult:
    """The operator-side server down and back (see :func:`scenarios.operator_down`)."""
    return scenarios.operator_down(setup, index == KILL_ROUNDS - 1)


@register("pod: 200 connections, CLI killed half-way", "cluster", 10,
          lambda: cluster_env("h"), note="SHA-256 checked, half-close")
def connections_during_kill(env: ClusterEnv, index: int) -> RoundResult:
    """Checked connections (HTTP POSTs the app echoes) while the CLI is killed (see
    :func:`scenarios.transfers_during_kill`)."""
    cli = start_cli(env, POD, "redirect")
    try:
        if not wait_ready(env, POD, cli):
            return RoundResult(None, 0, [f"the redirect did not come up: {cli.tail(3)}"])
        return scenarios.transfers_during_kill(env.bench(POD), cli.proc.kill)
    finally:
        cli.end()
