"""Node-mode faults: kill -9 of the CLI, of the manager, of both; the operator-side server down
and back; 200 checked connections while the CLI is killed half-way.

Recovery is measured from the fault (the first kill) until a fresh connection from the client
namespace gets the app's answer; rules are counted in the app's namespace, nftables and
iptables alike, 5 s after the fault at the latest.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator

from . import scenarios
from .nodelab import (
    NodeEnv,
    kill,
    node_env,
    start_cli,
    traffic,
    wait_gone,
    wait_ready,
)
from .registry import RULES_DEADLINE, RoundResult, register

KILL_ROUNDS = 20


def _kill_round(env: NodeEnv, index: int, victims: str, mechanism: str = "auto"
                ) -> RoundResult:
    """Start a CLI (``kdiag redirect`` or ``kdiag run`` in turns), let traffic flow, kill
    ``victims`` (cli, manager or both: in a random order, a random moment apart)."""
    before = env.folders()
    cli = start_cli(env, "redirect" if index % 2 == 0 else "run", mechanism)
    problems: list[str] = []
    try:
        if not wait_ready(env, cli):
            return RoundResult(None, 0, [f"the redirect did not come up: {cli.tail()}"])
        ours = env.folders() - before
        manager = cli.manager_pid()
        if manager is None:
            return RoundResult(None, 0, ["no manager process found"])
        pids = {"cli": [cli.proc.pid], "manager": [manager],
                "both": env.random.sample([cli.proc.pid, manager], 2)}[victims]
        with traffic(env):
            time.sleep(env.random.uniform(0, 0.3))
            t0 = time.monotonic()
            for n, pid in enumerate(pids):
                if n:
                    time.sleep(env.random.uniform(0, 0.05))
                kill(pid)
            recovery = env.wait_for(b"app:x", t0, t0 + RULES_DEADLINE)
        left = env.rules_left(t0 + RULES_DEADLINE)
        if not wait_gone(manager, t0 + RULES_DEADLINE):
            problems.append("the manager still runs 5 s after its CLI died")
        if victims == "cli" and ours & env.folders():  # (the manager removes it as it exits;
            # after both, the next session does)
            problems.append(f"session folder left: {sorted(ours & env.folders())}")
        if victims == "both" and env.stale_folders & env.folders():
            problems.append(f"the last round's folder is left: {sorted(env.stale_folders)}")
        env.stale_folders = ours if victims == "both" else set()
        return RoundResult(recovery, left, problems)
    finally:
        cli.end()


@register("kill -9 CLI", "node", KILL_ROUNDS, lambda: node_env("c"))
def kill_cli(env: NodeEnv, index: int) -> RoundResult:
    """kill -9 of the CLI (the manager sees stdin EOF and exits, its tables go)."""
    return _kill_round(env, index, "cli")


@register("kill -9 manager", "node", KILL_ROUNDS, lambda: node_env("m"))
def kill_manager(env: NodeEnv, index: int) -> RoundResult:
    """kill -9 of the manager (the kernel drops its owned tables)."""
    return _kill_round(env, index, "manager")


@register("kill -9 CLI + manager", "node", KILL_ROUNDS, lambda: node_env("b"))
def kill_both(env: NodeEnv, index: int) -> RoundResult:
    """kill -9 of both, in a random order; the next session removes the stale folder."""
    return _kill_round(env, index, "both")


@register("kill -9 CLI, iptables fallback", "node", 10, lambda: node_env("i"),
          note="the fallback's stop() race")
def kill_cli_iptables(env: NodeEnv, index: int) -> RoundResult:
    """kill -9 of the CLI with the manager on iptables rules (old kernels): its exit must
    remove every rule before it ends."""
    return _kill_round(env, index, "cli", "iptables")


@contextlib.contextmanager
def _running_redirect() -> Iterator[scenarios.Running]:
    with node_env("o") as env:
        cli = start_cli(env, "redirect")
        try:
            if not wait_ready(env, cli):
                raise RuntimeError(f"the redirect did not come up: {cli.tail()}")
            yield scenarios.Running(env.bench(), cli.proc)
        finally:
            cli.end()


@register("operator server down and back", "node", KILL_ROUNDS, _running_redirect)
def operator_down(setup: scenarios.Running, index: int) -> RoundResult:
    """The operator-side server down and back (see :func:`scenarios.operator_down`)."""
    return scenarios.operator_down(setup, index == KILL_ROUNDS - 1)


@register("200 connections, CLI killed half-way", "node", 10, lambda: node_env("h"),
          note="SHA-256 checked, half-close")
def connections_during_kill(env: NodeEnv, index: int) -> RoundResult:
    """Checked connections while the CLI is killed (see
    :func:`scenarios.transfers_during_kill`)."""
    cli = start_cli(env, "redirect")
    try:
        if not wait_ready(env, cli):
            return RoundResult(None, 0, [f"the redirect did not come up: {cli.tail()}"])
        return scenarios.transfers_during_kill(env.bench(), cli.proc.kill)
    finally:
        cli.end()


@register("CLI frozen (SIGSTOP)", "node", 10, lambda: node_env("f"),
          note="a laptop asleep: nothing is closed")
def cli_frozen(env: NodeEnv, index: int) -> RoundResult:
    """The CLI stops answering without closing anything (SIGSTOP, as a laptop put to sleep):
    the manager must notice its silent client by itself (gRPC keepalive) and fail open; once
    the CLI runs again it must end with exit 3 naming the lost connection."""
    cli = start_cli(env, "redirect" if index % 2 == 0 else "run")
    problems: list[str] = []
    try:
        if not wait_ready(env, cli):
            return RoundResult(None, 0, [f"the redirect did not come up: {cli.tail()}"])
        cli.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            recovery = env.wait_for(b"app:x", t0, t0 + RULES_DEADLINE)
            left = env.rules_left(t0 + RULES_DEADLINE)
        finally:
            cli.proc.send_signal(signal.SIGCONT)
        try:
            code = cli.proc.wait(10)
        except Exception:
            code = None
        if code != 3:
            problems.append(f"the CLI did not end with exit 3 once it ran again (exit {code}): "
                            f"{cli.tail()}")
        return RoundResult(recovery, left, problems)
    finally:
        cli.end()
