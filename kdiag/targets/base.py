"""The interface every target backend implements (node now, Kubernetes later)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdiag.session.client import ManagerClient


class TargetSession(abc.ABC):
    """An open connection to a manager running next to the target."""

    manager: ManagerClient
    info: dict[str, Any]
    """Facts for templates, e.g. ``{"kind": "node", "pid": 1234, "manager_pid": ...}``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop using the target: end streams, stop/clean the manager. Idempotent."""

    def summary(self) -> str:
        """One line for the report: what was reached and how (e.g. which pod, which manager)."""
        return str(self.info.get("kind", "target"))

    def __enter__(self) -> TargetSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Target(abc.ABC):
    """Something to debug: a process on this host, a pod, ..."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short human description, e.g. ``node process 1234 (nginx)``."""

    @abc.abstractmethod
    def open(self) -> TargetSession:
        """Start (or reach) the manager and return a session; raises TargetError."""
