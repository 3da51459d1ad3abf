"""Pods that start running under a label selector while kdiag follows it (as stern does).

A Deployment replaces a crashed or rolled pod with a new one of another name; someone following
``app=shop`` wants its lines too, and a workload intercept wants every new replica.
:class:`PodWatch` lists the selector once (a pod that started between the caller's own listing
and this one is not missed), then watches from that list's resource version, and reports each
pod the first time it is seen running (or, with ``accept``, ready). ``on_change`` hears of
every change of every pod under the selector, including the ones that went away.

The API server being unreachable is not the end: the watch retries, with a growing pause, lists
again once it answers (a pod that went away meanwhile is reported as ``MISSING``) and goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from kdiag.kube.errors import Call, api_call
from kdiag.kube.pods import is_running

log = logging.getLogger(__name__)

WATCH_SECONDS = 240
"""One watch request's lifetime (the API server ends it; then a new one continues)."""
RETRY_PAUSES = (0.5, 1.0, 2.0, 5.0)
"""Pauses between attempts to reach the API server again (the last one repeats)."""

Change = Callable[[str, Any, str], None]
"""``on_change(event, pod, uid)``: event ``ADDED``/``MODIFIED``/``DELETED`` (``pod``: the
object) or ``MISSING`` (a listing no longer holds pod ``uid``; ``pod`` is None)."""


class PodWatch:
    """Calls ``on_running(pod)`` (from its own thread) for each pod matching ``selector`` in
    ``namespace`` that runs (``accept``) and is not in ``known`` (UIDs), until :meth:`stop`."""

    def __init__(self, core: Any, namespace: str, selector: str, known: Iterable[str],
                 on_running: Callable[[Any], None], server: str = "", *,
                 accept: Callable[[Any], bool] = is_running, on_change: Change | None = None,
                 field_selector: str = "") -> None:
        self.core = core
        self.namespace = namespace
        self.selector = selector
        self.field_selector = field_selector
        self.on_running = on_running
        self.on_change = on_change
        self.accept = accept
        self.server = server
        self.error = ""
        """The last failure to reach the API server ('' once it answers again)."""
        self._known = set(known)
        self._present: set[str] = set()
        self._stopping = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (in a thread of its own)."""
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"podwatch-{self.selector or self.field_selector}")
        self._thread.start()

    def stop(self, join_timeout: float = 2.0) -> None:
        """Stop watching; no ``on_running`` call starts after this returns (but one under way
        may finish)."""
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()  # shuts the socket down: the blocked read returns
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(join_timeout)

    def _run(self) -> None:
        failures = 0
        version = ""
        while not self._stopping.is_set():
            try:
                version = self._watch_from(version)
                failures = 0
            except Exception as exc:  # reported, never fatal: the followed pods go on
                if self._stopping.is_set():
                    return
                self.error = f"watching pods {self.selector or self.field_selector}: {exc}"
                log.debug(self.error)
                version = ""
                self._stopping.wait(RETRY_PAUSES[min(failures, len(RETRY_PAUSES) - 1)])
                failures += 1

    def _selectors(self) -> dict[str, str]:
        found = {"label_selector": self.selector, "field_selector": self.field_selector}
        return {k: v for k, v in found.items() if v}

    def _list(self) -> str:
        with api_call(Call("list", "pods", self.namespace, "", self.server)):
            listed = self.core.list_namespaced_pod(self.namespace, _request_timeout=30,
                                                   **self._selectors())
        self.error = ""
        present = {pod.metadata.uid for pod in listed.items}
        for uid in sorted(self._present - present):
            self._changed("MISSING", None, uid)
        self._present = present
        for pod in listed.items:
            self._changed("ADDED", pod, pod.metadata.uid)
            self._seen(pod)
        return str(listed.metadata.resource_version)

    def _watch_from(self, version: str) -> str:
        """One watch request; returns the version to go on from ('' after an ERROR: list
        again)."""
        from kubernetes import watch

        if not version:
            version = self._list()
        self._watch = watch.Watch()
        with api_call(Call("watch", "pods", self.namespace, "", self.server)):
            for event in self._watch.stream(self.core.list_namespaced_pod, self.namespace,
                                            resource_version=version,
                                            timeout_seconds=WATCH_SECONDS,
                                            _request_timeout=WATCH_SECONDS + 30,
                                            **self._selectors()):
                if self._stopping.is_set():
                    break
                if event["type"] == "ERROR":  # e.g. the version is too old
                    return ""
                pod = event["object"]
                version = pod.metadata.resource_version
                uid = pod.metadata.uid
                if event["type"] == "DELETED":
                    self._present.discard(uid)
                else:
                    self._present.add(uid)
                self._changed(event["type"], pod, uid)
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._seen(pod)
        return version

    def _changed(self, event: str, pod: Any, uid: str) -> None:
        if self.on_change is not None and not self._stopping.is_set():
            self.on_change(event, pod, uid)

    def _seen(self, pod: Any) -> None:
        if self._stopping.is_set() or pod.metadata.uid in self._known or not self.accept(pod):
            return
        self._known.add(pod.metadata.uid)
        self.on_running(pod)
