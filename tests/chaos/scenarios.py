"""Faults both suites run the same way (node mode and a pod): the operator-side server down and
back, and checked connections while the CLI is killed half-way. Each suite gives a
:class:`Bench`: how to reach the target's app from where its clients are, and how to count its
rules; the rounds here assert the same things of both.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import netprobe
from .registry import RULES_DEADLINE, RoundResult

if TYPE_CHECKING:  # (the labs build benches: no import of them at run time)
    from .nodelab import OperatorServer

CONNECTIONS = 200
MAX_SIZE = 256 * 1024


@dataclass
class Bench:
    """A target as the shared faults see it."""

    random: random.Random
    operator: OperatorServer
    app: tuple[str, int]  # the app's address, as its clients reach it
    framing: netprobe.Framing  # how a checked payload travels to the app
    pool: Callable[[int], ThreadPoolExecutor]  # threads where the clients are
    # seconds from ``since`` until a fresh connection reaches the app / the operator (or None
    # by ``deadline``): (since, deadline)
    reaches_app: Callable[[float, float], float | None]
    reaches_operator: Callable[[float, float], float | None]
    rules_left: Callable[[float], int]  # kdiag rules left at ``deadline`` (earlier once none)


@dataclass
class Running:
    """A target with one ``kdiag redirect`` (``cli``) up for all of a fault's rounds."""

    bench: Bench
    cli: subprocess.Popen[bytes]


def operator_down(running: Running, last: bool) -> RoundResult:
    """The operator-side server stops (connections fail open to the app) and comes back
    (connections reach it again); recovery is the slower of the two. The ``last`` round ends
    the CLI (``kdiag redirect``) with SIGINT: exit 130, no rule left."""
    bench, cli = running.bench, running.cli
    bench.operator.stop()
    t0 = time.monotonic()
    down = bench.reaches_app(t0, t0 + RULES_DEADLINE)
    bench.operator.start()
    t1 = time.monotonic()
    back = bench.reaches_operator(t1, t1 + RULES_DEADLINE)
    recovery = None if down is None or back is None else max(down, back)
    left, problems = 0, []
    if last:
        cli.send_signal(signal.SIGINT)
        t2 = time.monotonic()
        left = bench.rules_left(t2 + RULES_DEADLINE)
        code = cli.wait(10)
        if code != 130:
            problems.append(f"kdiag redirect exited {code} after Ctrl-C, not 130")
    return RoundResult(recovery, left, problems)


def transfers_during_kill(bench: Bench, kill_cli: Callable[[], None]) -> RoundResult:
    """200 concurrent connections of random sizes (half-closed, answers checked by SHA-256)
    through a running redirect; the CLI is killed (``kill_cli``) once half of them finished: none
    may come back corrupted (ones in flight may break); after recovery, 100 new ones must all
    reach the app intact."""
    rnd = bench.random
    sizes = [rnd.choice([0, 1, rnd.randrange(1, 4096), rnd.randrange(1, MAX_SIZE)])
             for _ in range(CONNECTIONS)]

    def transfer(size: int) -> netprobe.Outcome:
        return netprobe.checked(bench.app, size, framing=bench.framing)

    with bench.pool(CONNECTIONS) as pool:
        futures = [pool.submit(transfer, size) for size in sizes]
        for done, _ in enumerate(as_completed(futures), 1):
            if done == CONNECTIONS // 2:
                break
        t0 = time.monotonic()
        kill_cli()
        recovery = bench.reaches_app(t0, t0 + RULES_DEADLINE)
        outcomes = [f.result() for f in futures]
        after = list(pool.map(transfer, sizes[:100]))
    left = bench.rules_left(t0 + RULES_DEADLINE)
    problems = []
    if not any(o.route == "operator" for o in outcomes):
        problems.append("no connection reached the operator: the redirect carried nothing")
    # Connections in flight when the CLI dies may break (a reset), never hang nor come back
    # corrupted: one left without answer or reset would wait for ever.
    problems += [f"{o.route}: {o.detail}" for o in outcomes + after
                 if o.route in ("corrupt", "black-holed")]
    problems += [f"a new connection after recovery did not reach the app: {o.route} "
                 f"{o.detail}" for o in after if o.route != "app"]
    return RoundResult(recovery, left, problems[:5])
