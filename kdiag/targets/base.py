"""The interface every target backend implements (node now, Kubernetes later)."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from kdiag.lifeline import Lifeline

if TYPE_CHECKING:
    from kdiag.session.client import ManagerClient


class Replica(Protocol):
    """One pod of a fleet (see :class:`Fleet`)."""

    @property
    def name(self) -> str:
        """The pod's name."""

    @property
    def gone(self) -> str:
        """Why it left the fleet ('' while it is in it)."""


class Fleet(Protocol):
    """The pods a ``pick: all`` target means; manager steps fan out over them, and work kept
    up in the background follows them (pods that join get it, pods that go are dropped)."""

    label: str
    """``deployment/api``, ``app=api`` or ``pod/api-0``."""

    def replicas(self) -> list[Replica]:
        """The pods in the fleet now (joined ones included, those gone left out)."""

    def open(self, replica: Replica) -> TargetSession:
        """The session to ``replica``'s manager, opened (injected) on first use; TargetError
        (PodGone once it left) when it cannot be had."""

    def on_join(self, listener: Callable[[Replica], None]) -> Callable[[], None]:
        """Call ``listener(replica)`` (from a thread of its own) for each pod that joins;
        returns a function that stops it."""

    def settle(self, replica: Replica, cause: str, timeout: float) -> str:
        """After work on ``replica`` broke with ``cause``: why the pod left ('' when it did
        not: then the work itself failed), waiting up to ``timeout`` for the cluster to say."""


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

    def fleet(self) -> Fleet | None:
        """The pods to fan out over (a ``pick: all`` target), or None for one target."""
        return None

    def map_port(self, port: str | int) -> int:
        """The target's port for ``port`` as a user wrote it (a Service's port or name becomes
        the pod's targetPort; a name, a container port). ValueError when it cannot."""
        if not str(port).isdigit():
            raise ValueError(f"port {port!r}: a named port needs a pod target")
        return int(str(port))

    def node_sources(self) -> tuple[str, ...]:
        """Where the node's own connections to the target come from (the kubelet's probes):
        incoming redirects leave them alone unless asked otherwise."""
        return ()

    def on_notice(self, listener: Callable[[str], None]) -> None:  # noqa: B027 - optional
        """Call ``listener(message)`` for what the run should note about the target (a pod
        joined, a pod went away). The default has nothing to say."""

    def watch(self) -> Lifeline:
        """Start watching the target and the manager (once; later calls return the same
        lifeline): it fails, with the cause, when either is lost (pod deleted, evicted or
        restarted, manager gone, target process exited...). The default never fails."""
        lifeline: Lifeline | None = getattr(self, "_lifeline", None)
        if lifeline is None:
            lifeline = self._lifeline = Lifeline()
            self._start_watching(lifeline)
        return lifeline

    def _start_watching(self, lifeline: Lifeline) -> None:  # noqa: B027 - optional hook
        """Backends that can tell when the target is lost start their watch here."""

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
