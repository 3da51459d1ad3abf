"""The fault registry: each fault module registers its faults here; the runner runs them.

A fault has a *setup* (a context manager giving what all its rounds share: a lab, a cluster
target...) and a *round* function that injects the fault once and measures it. Another
suite (the cluster faults) is one more module calling :func:`register`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

MAX_RECOVERY = 2.0  # seconds from a fault until a fresh connection reaches the app
RULES_DEADLINE = 5.0  # seconds after a fault by which no kdiag rule may be left


@dataclass
class RoundResult:
    """One round: how long until the app was reachable again (None: not within the round's
    deadline), how many kdiag rules were left ``RULES_DEADLINE`` after the fault, and anything
    else that went wrong (corrupted data, a connection that should have reached the app...)."""

    recovery: float | None
    rules_left: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Did the round meet every target?"""
        return (self.recovery is not None and self.recovery <= MAX_RECOVERY
                and self.rules_left == 0 and not self.problems)


@dataclass(frozen=True)
class Fault:
    """A fault to repeat ``rounds`` times within one ``setup``."""

    name: str
    suite: str
    rounds: int
    setup: Callable[[], AbstractContextManager[Any]]
    run_round: Callable[[Any, int], RoundResult]
    note: str = ""


FAULTS: list[Fault] = []


def register(name: str, suite: str, rounds: int,
             setup: Callable[[], AbstractContextManager[Any]], note: str = ""
             ) -> Callable[[Callable[[Any, int], RoundResult]], Callable[[Any, int], RoundResult]]:
    """Decorator: register the decorated round function as fault ``name``."""

    def add(run_round: Callable[[Any, int], RoundResult]) -> Callable[[Any, int], RoundResult]:
        FAULTS.append(Fault(name, suite, rounds, setup, run_round, note))
        return run_round

    return add


@dataclass
class Summary:
    """A fault's figures over its rounds."""

    fault: Fault
    results: list[RoundResult]

    @property
    def worst_recovery(self) -> float | None:
        """The slowest recovery (None if some round never recovered)."""
        values = [r.recovery for r in self.results]
        return None if any(v is None for v in values) else max(v for v in values if v is not None)

    @property
    def median_recovery(self) -> float | None:
        """The median recovery of the rounds that recovered."""
        values = [r.recovery for r in self.results if r.recovery is not None]
        return statistics.median(values) if values else None

    @property
    def rules_left(self) -> int:
        """Rules left after the deadline, summed over the rounds."""
        return sum(r.rules_left for r in self.results)

    @property
    def problems(self) -> list[str]:
        """Every problem, with its round."""
        return [f"round {i + 1}: {p}" for i, r in enumerate(self.results) for p in r.problems]

    @property
    def ok(self) -> bool:
        """Did every round meet every target?"""
        return bool(self.results) and all(r.ok for r in self.results)
