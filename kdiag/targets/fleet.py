"""Every ready pod of a target (``pick: all``): a fleet of pods, each with its own manager
session, that follows the workload while the run goes on.

Pods are reached lazily: the fleet resolves them at once, but injects or reuses a pod's manager
(one port-forward and one gRPC channel per pod, see :mod:`kdiag.targets.kubernetes`) only when
a step needs that pod — concurrently, as :mod:`kdiag.engine.fanout` runs a step on every pod.

One watch on the target's selector (:class:`~kdiag.kube.podwatch.PodWatch`) keeps the fleet
current: a pod that becomes ready joins it (``on_join`` listeners — a background redirect —
start their work there), a pod that goes away (deleted, evicted, completed, no longer matching)
leaves it, with a notice. The fleet's lifeline fails only when the run must stop:

- the manager of a pod still in the fleet dies (its container terminated, or its
  port-forward lost for good while the pod lives): its work is gone and nothing replaces it;
- no pod is left, and none joins within :data:`ALL_GONE_GRACE` seconds (a named pod: at once).

While background work follows the fleet, a pod that runs but is not ready yet has its manager
reached (injected) at once, so the work starts there the moment the pod is ready, rather than a
second or two later while the Service already sends it traffic.

A pod's container restarting is not a loss here (the pod, its network namespace and its
manager stay; the redirect goes on).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kdiag.errors import TargetError
from kdiag.kube.errors import PodGone
from kdiag.kube.podguard import pod_loss
from kdiag.kube.pods import PodRef, Selection, is_ready, is_running, to_ref
from kdiag.lifeline import Lifeline

from .base import Replica, TargetSession

if TYPE_CHECKING:
    from kdiag.kube.config import KubeConfig
    from kdiag.kube.podwatch import PodWatch

log = logging.getLogger(__name__)

ALL_GONE_GRACE = 30.0
"""Seconds a workload may have no pod in the fleet (a rollout with the Recreate strategy)
before the run fails."""
CLOSE_WORKERS = 10


class PodSession(Protocol):
    """What the fleet uses of one pod's session (a KubernetesSession)."""

    relay: Any
    """The port-forward to the manager (its ``lifeline`` fails when it is lost for good)."""
    container: str
    """The manager's container."""

    def close(self) -> None:
        """End the session."""


Opener = Callable[[PodRef], PodSession]
Diagnose = Callable[[PodRef, str], TargetError | None]


@dataclass(eq=False)
class Member:
    """One pod of the fleet and, once reached, its session."""

    ref: PodRef
    gone: str = ""
    session: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.ref.name


class FleetSession(TargetSession):
    """The pods of a ``pick: all`` target (see the module's doc)."""

    def __init__(self, open_pod: Opener, diagnose: Diagnose, kube: KubeConfig,
                 selection: Selection, container: str | None = None) -> None:
        self._open_pod = open_pod
        self._diagnose = diagnose
        self.container = container
        self.kube = kube
        self.selection = selection
        self.label = selection.label
        self._lock = threading.Lock()
        self._members: dict[str, Member] = {p.uid: Member(p) for p in selection.pods}
        self._joins: list[Callable[[Replica], None]] = []
        self._notices: list[Callable[[str], None]] = []
        self._lifeline = Lifeline()
        self._gone_event = threading.Condition(self._lock)
        self._empty_since: threading.Timer | None = None
        self._closed = False
        self._warming: dict[str, Future[Any]] = {}
        self._watch: PodWatch | None = None
        first = selection.pods[0]
        self.info = {"kind": "kubernetes", **first.to_dict(), "server": kube.server,
                     "context": kube.context, "in_cluster": kube.in_cluster, "user": kube.user,
                     "pods": [p.to_dict() for p in selection.pods], "workload": self.label,
                     "pick": "all"}
        self._start_following()

    # -- what steps use -----------------------------------------------------------------

    def fleet(self) -> FleetSession:
        return self

    def replicas(self) -> list[Replica]:
        """The pods in the fleet now, oldest first."""
        with self._lock:
            members = [m for m in self._members.values() if not m.gone]
        members.sort(key=lambda m: (m.ref.created, m.name))
        return list(members)

    def open(self, replica: Replica) -> Any:
        """The pod's session, injecting or reusing its manager on first use."""
        member = self._member(replica)
        with member.lock:
            if member.gone:
                raise PodGone(member.gone)
            if member.session is None:
                session = self._warmed(member.ref) or self._open_pod(member.ref)
                member.session = session
                session.relay.lifeline.listen(
                    lambda loss: self._unreachable(member, loss.cause))
            return member.session

    @property
    def manager(self) -> Any:  # type: ignore[override]
        """The first pod's manager (for callers that do not fan out)."""
        return self.open(self.replicas()[0]).manager

    def on_join(self, listener: Callable[[Replica], None]) -> Callable[[], None]:
        with self._lock:
            self._joins.append(listener)

        def forget() -> None:
            with self._lock:
                if listener in self._joins:
                    self._joins.remove(listener)

        return forget

    def on_notice(self, listener: Callable[[str], None]) -> None:
        with self._lock:
            self._notices.append(listener)

    def settle(self, replica: Replica, cause: str, timeout: float) -> str:
        """Why the pod left ('' if it did not), waiting up to ``timeout`` for the watch to
        see it, then asking the API server."""
        member = self._member(replica)
        with self._gone_event:
            self._gone_event.wait_for(lambda: bool(member.gone), timeout)
        if member.gone:
            return member.gone
        problem = self._diagnose(member.ref, member.session.container
                                 if member.session is not None else "")
        if problem is not None and isinstance(problem, PodGone):
            self._leave(member, str(problem))
            return member.gone
        return ""

    def map_port(self, port: str | int) -> int:
        return self.open(self.replicas()[0]).map_port(port)

    def summary(self) -> str:
        pods = self.replicas()
        return (f"{self.label} in {self.selection.pods[0].namespace}: {len(pods)} ready "
                f"pod(s) ({', '.join(m.name for m in pods)}); manager steps run on each")

    def _member(self, replica: Replica) -> Member:
        if isinstance(replica, Member):
            return replica
        with self._lock:
            return next(m for m in self._members.values() if m.name == replica.name)

    # -- following the workload ---------------------------------------------------------

    def _start_following(self) -> None:
        from kdiag.kube.podwatch import PodWatch

        first = self.selection.pods[0]
        selector = self.selection.selector
        self._watch = PodWatch(self.kube.core(), first.namespace, selector, self._members,
                               self._joined, self.kube.server, accept=is_ready,
                               on_change=self._changed,
                               field_selector="" if selector else f"metadata.name={first.name}")
        self._watch.start()

    def _joined(self, pod: Any) -> None:
        try:
            ref = to_ref(pod, self.container)
        except TargetError as exc:
            self._notice(f"pod {pod.metadata.name} is ready but not joined: {exc}")
            return
        member = Member(ref)
        with self._lock:
            if self._closed:
                return
            self._members[ref.uid] = member
            self._cancel_empty()
            listeners = list(self._joins)
        self._notice(f"pod {ref.name} joined {self.label} (ready)")
        for listener in listeners:
            threading.Thread(target=listener, args=(member,), daemon=True,
                             name=f"join-{ref.name}").start()

    def _changed(self, event: str, pod: Any, uid: str) -> None:
        with self._lock:
            member = self._members.get(uid)
        if member is None:
            self._warm(event, pod, uid)
            return
        if member.gone:
            return
        where = f"pod {member.ref.namespace}/{member.name}"
        if event == "MISSING" or (event == "DELETED" and pod.metadata.deletion_timestamp):
            self._leave(member, f"{where} deleted")
            return
        if event == "DELETED":  # its labels changed: it is no longer the workload's
            self._leave(member, f"{where} no longer matches {self.label}")
            return
        gone = pod_loss(pod, member.ref, None, None)
        if gone is not None:
            self._leave(member, gone)
            return
        session = member.session
        died = pod_loss(pod, member.ref, None, session.container) if session else None
        if died is not None:
            self._lifeline.fail(f"pod {member.name}: {died}")

    def _warm(self, event: str, pod: Any, uid: str) -> None:
        """A pod that runs but is not ready yet, while background work follows the fleet:
        reach its manager now (injecting it takes a second or two), so that the work starts
        there as soon as the pod is ready — before the Service sends it much traffic."""
        if event in ("DELETED", "MISSING"):
            with self._lock:
                warming = self._warming.pop(uid, None)
            if warming is not None:
                warming.add_done_callback(_close_warmed)
            return
        with self._lock:
            if (self._closed or not self._joins or uid in self._warming or is_ready(pod)
                    or not is_running(pod)):
                return
            warming = self._warming[uid] = Future()
        try:
            ref = to_ref(pod, self.container)
        except TargetError as exc:
            warming.set_exception(exc)
            return

        def reach() -> None:
            try:
                warming.set_result(self._open_pod(ref))
            except Exception as exc:  # joining tries again, and says why if it fails
                warming.set_exception(exc)

        threading.Thread(target=reach, daemon=True, name=f"warm-{ref.name}").start()

    def _warmed(self, ref: PodRef) -> Any:
        """The session reached while the pod was not ready yet (None: none, or it failed)."""
        with self._lock:
            warming = self._warming.pop(ref.uid, None)
        if warming is None:
            return None
        try:
            return warming.result()
        except Exception as exc:
            log.info("reaching %s before it was ready: %s", ref.name, exc)
            return None

    def _unreachable(self, member: Member, cause: str) -> None:
        """The pod's port-forward is lost for good: gone with its pod, or a failure."""
        if self._closed or member.gone:
            return
        if not self.settle(member, cause, 2.0):
            self._lifeline.fail(f"pod {member.name}: {cause}")

    def _leave(self, member: Member, cause: str) -> None:
        with self._lock:
            if member.gone or self._closed:
                return
            member.gone = cause or f"pod {member.name} went away"
            self._gone_event.notify_all()
            left = [m for m in self._members.values() if not m.gone]
            if not left:
                self._start_empty()
        self._notice(f"{member.gone}: it left {self.label}")
        session = member.session
        if session is not None:
            threading.Thread(target=session.close, daemon=True).start()

    def _start_empty(self) -> None:
        """(lock held) No pod left: the run fails unless one joins within the grace."""
        grace = ALL_GONE_GRACE if self.selection.selector else 0.0
        cause = f"no pod of {self.label} is left"
        if grace <= 0:
            threading.Thread(target=self._lifeline.fail, args=(cause,), daemon=True).start()
            return
        self._empty_since = threading.Timer(
            grace, lambda: self._lifeline.fail(f"{cause} (none ready within {grace:g}s)"))
        self._empty_since.daemon = True
        self._empty_since.start()

    def _cancel_empty(self) -> None:
        if self._empty_since is not None:
            self._empty_since.cancel()
            self._empty_since = None

    def _notice(self, message: str) -> None:
        with self._lock:
            listeners = list(self._notices)
        for listener in listeners:
            try:
                listener(message)
            except Exception:  # a reporter's bug must not stop the watch
                log.exception("fleet notice listener failed")

    # -- session ------------------------------------------------------------------------

    def watch(self) -> Lifeline:
        return self._lifeline

    def close(self) -> None:
        """Stop following, then close every pod's session (concurrently)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cancel_empty()
            sessions = [m.session for m in self._members.values() if m.session is not None]
            warming, self._warming = list(self._warming.values()), {}
        for future in warming:
            future.add_done_callback(_close_warmed)
        if self._watch is not None:
            self._watch.stop()
        if sessions:
            with ThreadPoolExecutor(min(len(sessions), CLOSE_WORKERS)) as pool:
                list(pool.map(_close_quietly, sessions))


def _close_warmed(future: Future[Any]) -> None:
    if future.exception() is None:
        _close_quietly(future.result())


def _close_quietly(session: TargetSession) -> None:
    try:
        session.close()
    except Exception as exc:  # one pod's broken session must not keep the others open
        log.info("closing %s: %s", session.summary(), exc)
