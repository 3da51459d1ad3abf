"""Watching one pod for its loss while kdiag works with it.

:class:`PodGuard` watches the pod by name (one watch request after another, from the last
resource version) and fails a :class:`~kdiag.lifeline.Lifeline` with the cause when the pod
is deleted (or replaced by another of the same name), evicted, failed or completed, when the
container kdiag works with restarts or ends, or when the manager's ephemeral container ends:
``pod shop/api-7d9 deleted``, ``manager gone (container kdiag-... terminated: OOMKilled,
exit code 137)``.

The API server being unreachable is not by itself a loss (the pod may be fine and the
manager's port-forward may come back): the guard retries, with a growing pause, until it
reaches the API server again or is stopped; it reads the pod once more first, so nothing that
happened meanwhile is missed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kdiag.kube.errors import Call, api_call
from kdiag.kube.pods import PodRef
from kdiag.lifeline import Lifeline

log = logging.getLogger(__name__)

WATCH_SECONDS = 240
RETRY_PAUSES = (0.5, 1.0, 2.0, 5.0)
"""Pauses between attempts to reach the API server again (the last one repeats)."""


def _terminated(state: Any) -> str:
    """``OOMKilled, exit code 137`` for a container's terminated state."""
    reason = state.reason or "terminated"
    code = state.exit_code
    return f"{reason}, exit code {code}" if code is not None else reason


def pod_loss(pod: Any, ref: PodRef, restarts: int | None, manager: str | None) -> str | None:
    """Why ``pod`` is lost for kdiag, or None while it is fine.

    ``restarts``: the restart count of ``ref.container`` when kdiag started (None: do not
    check the container); ``manager``: the manager's ephemeral container, if any.
    """
    where = f"pod {ref.namespace}/{ref.name}"
    if pod.metadata.uid != ref.uid:
        return f"{where} deleted (a new pod of that name replaced it)"
    if pod.metadata.deletion_timestamp is not None:
        return f"{where} deleted"
    status = pod.status
    if status is None:
        return None
    if status.reason == "Evicted":
        return f"{where} evicted" + (f" ({status.message.strip()})" if status.message else "")
    if status.phase in ("Failed", "Succeeded"):
        detail = status.reason or ("failed" if status.phase == "Failed" else "completed")
        return f"{where} {status.phase.lower()} ({detail})"
    for container in status.ephemeral_container_statuses or []:
        if container.name == manager and container.state is not None \
                and container.state.terminated is not None:
            return (f"manager gone (container {manager} terminated: "
                    f"{_terminated(container.state.terminated)})")
    if restarts is not None:
        for container in status.container_statuses or []:
            if container.name != ref.container:
                continue
            if (container.restart_count or 0) > restarts:
                last = container.last_state.terminated if container.last_state else None
                why = f" ({_terminated(last)})" if last is not None else ""
                return f"{where}: container {ref.container} restarted{why}"
            if container.state is not None and container.state.terminated is not None:
                return (f"{where}: container {ref.container} terminated "
                        f"({_terminated(container.state.terminated)})")
    return None


def restart_count(pod: Any, container: str) -> int:
    """The restart count of ``container`` in ``pod`` (0 if not known)."""
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.name == container:
            return int(status.restart_count or 0)
    return 0


class PodGuard:
    """Fails ``lifeline`` when pod ``ref`` is lost (see :func:`pod_loss`), until :meth:`stop`.

    ``watch_container``: also a restart or the end of ``ref.container`` (the target's);
    ``manager``: the name of the manager's ephemeral container to watch.
    """

    def __init__(self, core: Any, ref: PodRef, lifeline: Lifeline, *, server: str = "",
                 watch_container: bool = True, manager: str | None = None) -> None:
        self.core = core
        self.ref = ref
        self.lifeline = lifeline
        self.server = server
        self.watch_container = watch_container
        self.manager = manager
        self.error = ""
        """The last failure to reach the API server (cleared once it answers again)."""
        self._restarts: int | None = None
        self._stopping = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching, in a thread of its own."""
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"podguard-{self.ref.name}")
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (a loss seen from now on is not reported)."""
        self._stopping.set()
        watch = self._watch
        if watch is not None:
            watch.stop()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set() and self.lifeline.loss is None:
            try:
                version = self._read()
                while version and not self._stopping.is_set() and self.lifeline.loss is None:
                    version = self._watch_from(version)
                    failures = 0
                    self.error = ""
            except Exception as exc:  # the API server is unreachable: not by itself a loss
                self.error = str(exc)
                log.info("watching pod %s/%s: %s", self.ref.namespace, self.ref.name, exc)
                pause = RETRY_PAUSES[min(failures, len(RETRY_PAUSES) - 1)]
                failures += 1
                self._stopping.wait(pause)

    def _read(self) -> str:
        """Read the pod now; the resource version to watch from ('' once it is lost)."""
        from kubernetes.client.exceptions import ApiException

        call = Call("get", "pods", self.ref.namespace, self.ref.name, self.server)
        try:
            pod = self.core.read_namespaced_pod(self.ref.name, self.ref.namespace,
                                                _request_timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                self._lost(f"pod {self.ref.namespace}/{self.ref.name} deleted")
                return ""
            with api_call(call):
                raise
        if self._restarts is None and self.watch_container:
            self._restarts = restart_count(pod, self.ref.container)
        self._check(pod)
        return str(pod.metadata.resource_version)

    def _watch_from(self, version: str) -> str:
        """One watch request; the version to go on from ('' after an ERROR event: read the
        pod again)."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        self._watch = watch.Watch()
        stream = self._watch.stream(
            self.core.list_namespaced_pod, self.ref.namespace,
            field_selector=f"metadata.name={self.ref.name}", resource_version=version,
            timeout_seconds=WATCH_SECONDS, _request_timeout=WATCH_SECONDS + 30)
        try:
            for event in stream:
                if self._stopping.is_set():
                    break
                if event["type"] == "ERROR":
                    return ""
                pod = event["object"]
                if event["type"] == "DELETED" and pod.metadata.uid == self.ref.uid:
                    self._lost(f"pod {self.ref.namespace}/{self.ref.name} deleted")
                    return ""
                version = pod.metadata.resource_version
                self._check(pod)
        except ApiException as exc:
            if exc.status == 410:  # the version is too old: read the pod again
                return ""
            raise
        return version

    def _check(self, pod: Any) -> None:
        cause = pod_loss(pod, self.ref, self._restarts, self.manager)
        if cause is not None:
            self._lost(cause)

    def _lost(self, cause: str) -> None:
        if not self._stopping.is_set():
            self.lifeline.fail(cause)
