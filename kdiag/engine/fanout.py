"""A manager step over every pod of a ``pick: all`` target: the fan-out.

The step type runs once per pod, concurrently (at most ``parallel`` at a time, default
:data:`DEFAULT_PARALLEL`), each with a :class:`~kdiag.engine.podcontext.PodContext`. Its
result holds each pod's own result under ``pods`` (by pod name, with ``ok``, ``failed``,
``message``, ``pod``) and the aggregate: ``count``, ``ok_count``, ``failed_count``, ``all_ok``,
``failed_pods``, ``gone_pods``. The step fails when a pod fails (its message names them); when
every pod failed for an environment cause it is an environment error (exit 3).

Work kept up in the background (a redirect, a capture) becomes one :class:`FannedWork` that
follows the fleet: a pod that joins gets the same work (its entry appears under ``pods``), a
pod that goes away is dropped with a note; the work's lifeline fails (failing the run) only
when a pod still in the fleet loses its work, or a joining pod cannot get it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from kdiag.engine.context import StepRuntime
from kdiag.engine.execution import execute_guarded
from kdiag.engine.podcontext import PodContext
from kdiag.errors import EnvironmentProblem
from kdiag.steps.base import Background, StepContext, StepFailed, StepOutcome, StepType
from kdiag.targets.following import Following

if TYPE_CHECKING:
    from kdiag.targets.base import Fleet, Replica

log = logging.getLogger(__name__)

DEFAULT_PARALLEL = 10
MAX_NAMED = 5
"""Pods a failure message names (then how many more)."""

Outcome = StepOutcome | EnvironmentProblem


def entry(name: str, outcome: Outcome) -> dict[str, Any]:
    """One pod's entry in a fanned-out result: its step result (the same dict: background
    work updates it) with ``pod``, ``ok``, ``failed``, ``message``, ``error`` (an environment
    cause) and ``gone`` (the pod left the target since)."""
    if isinstance(outcome, EnvironmentProblem):
        return {"pod": name, "ok": False, "failed": True, "message": str(outcome),
                "error": True, "gone": False}
    result = outcome.result
    result.update(pod=name, ok=outcome.ok, failed=not outcome.ok, message=outcome.message,
                  error=False, gone=False)
    if outcome.artifacts:
        result["artifacts"] = list(outcome.artifacts)
    return result


def recount(result: dict[str, Any]) -> None:
    """The aggregate fields of a fanned-out result, from its ``pods``."""
    pods = result["pods"]
    live = {name: e for name, e in pods.items() if not e.get("gone")}
    failed = [name for name, e in live.items() if not e.get("ok")]
    result.update(count=len(live), ok_count=len(live) - len(failed), failed_count=len(failed),
                  all_ok=not failed, failed_pods=failed,
                  gone_pods=[name for name, e in pods.items() if e.get("gone")])


def failure_message(result: dict[str, Any]) -> str:
    """``2 of 3 pods failed: api-a: exit code 1; api-b: ...``."""
    failed = result["failed_pods"]
    named = "; ".join(f"{name}: {result['pods'][name].get('message') or 'failed'}"
                      for name in failed[:MAX_NAMED])
    more = f"; and {len(failed) - MAX_NAMED} more" if len(failed) > MAX_NAMED else ""
    return f"{len(failed)} of {result['count']} pods failed: {named}{more}"


class Fanned(StepType):
    """Runs ``inner`` on every pod of ``fleet`` (see the module's doc)."""

    kind = "fanout"
    summary = "A manager step on every pod of the target."
    schema = {}  # never validated: the inner step's is

    def __init__(self, inner: StepType, fleet: Fleet, parallel: int | None = None) -> None:
        self.inner = inner
        self.fleet = fleet
        self.parallel = parallel or DEFAULT_PARALLEL

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        assert isinstance(ctx, StepRuntime)
        replicas = self.fleet.replicas()
        if not replicas:
            raise EnvironmentProblem(f"no pod of {self.fleet.label} is left")
        result: dict[str, Any] = {"pods": {}, "workload": self.fleet.label}
        outcomes = self._each(body, ctx, replicas)
        artifacts: list[str] = []
        for replica, outcome in outcomes:
            result["pods"][replica.name] = entry(replica.name, outcome)
            if isinstance(outcome, StepOutcome):
                artifacts += outcome.artifacts
        recount(result)
        works = {r.name: o.background for r, o in outcomes
                 if isinstance(o, StepOutcome) and o.background is not None}
        if not result["all_ok"]:
            for work in works.values():
                _stop_quietly(work)
            message = failure_message(result)
            if all(isinstance(o, EnvironmentProblem) for _, o in outcomes):
                raise EnvironmentProblem(message)
            return StepOutcome(ok=False, result=result, message=message, artifacts=artifacts)
        if ctx.background and works:
            fanned = FannedWork(self.inner, body, ctx, self.fleet, result)
            for replica, _ in outcomes:
                if replica.name in works:
                    fanned.add(replica, works[replica.name])
            fanned.follow()
            return StepOutcome(result=result, background=fanned, artifacts=artifacts)
        return StepOutcome(result=result, artifacts=artifacts)

    def _each(self, body: Any, ctx: StepRuntime, replicas: list[Replica]
              ) -> list[tuple[Replica, Outcome]]:
        """The step on each pod, ``parallel`` at a time, in the pods' order."""

        def one(replica: Replica) -> Outcome:
            pod = PodContext(ctx, replica, self.fleet)
            try:
                return execute_guarded(self.inner, body, pod)
            finally:
                pod.flush()

        workers = max(1, min(self.parallel, len(replicas)))
        with ThreadPoolExecutor(workers, thread_name_prefix=f"fanout-{ctx.ref.name}") as pool:
            return list(zip(replicas, pool.map(one, replicas), strict=True))


def _stop_quietly(work: Background) -> None:
    try:
        work.stop()
    except Exception as exc:  # the step failed already; its message says why
        log.info("stopping a pod's work: %s", exc)


class FannedWork:
    """One step's background work on every pod of the fleet, following it (see
    :class:`~kdiag.targets.following.Following`); joining pods get an entry in the result."""

    def __init__(self, inner: StepType, body: Any, runtime: StepRuntime, fleet: Fleet,
                 result: dict[str, Any]) -> None:
        self.inner = inner
        self.body = body
        self.runtime = runtime
        self.result = result
        self._lock = threading.Lock()
        self._following = Following(fleet, inner.kind, self._start, runtime.note, self._gone)
        self.lifeline = self._following.lifeline

    def add(self, replica: Replica, work: Background) -> None:
        """Keep ``work`` (the step's, on ``replica``) up and watch it."""
        self._following.add(replica, work)

    def follow(self) -> None:
        """Run the step on each pod that joins the fleet from now on."""
        self._following.follow()

    def _start(self, replica: Replica) -> Background | None:
        pod = PodContext(self.runtime, replica, self._following.fleet, joined=True)
        try:
            outcome = execute_guarded(self.inner, self.body, pod)
        finally:
            pod.flush()
        with self._lock:
            self.result["pods"][replica.name] = entry(replica.name, outcome)
            recount(self.result)
        if isinstance(outcome, EnvironmentProblem):
            raise outcome
        if not outcome.ok:
            raise StepFailed(outcome.message)
        return outcome.background

    def _gone(self, replica: Replica, cause: str) -> None:
        with self._lock:
            found = self.result["pods"].get(replica.name)
            if found is not None:
                found.update(gone=True, gone_reason=cause)
            recount(self.result)

    def stop(self) -> None:
        """Stop following and every pod's work; a failure to stop names its pod."""
        errors = self._following.stop()
        if errors:
            raise StepFailed("; ".join(errors))
