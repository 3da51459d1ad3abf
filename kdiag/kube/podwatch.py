"""Pods that start running under a label selector while kdiag follows it (as stern does).

A Deployment replaces a crashed or rolled pod with a new one of another name; someone following
``app=shop`` wants its lines too. :class:`PodWatch` lists the selector once (a pod that started
between the caller's own listing and this one is not missed), then watches from that list's
resource version, and reports each pod the first time it is seen running.
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


class PodWatch:
    """Calls ``on_running(pod)`` (from its own thread) for each pod matching ``selector`` in
    ``namespace`` that runs and is not in ``known`` (UIDs), until :meth:`stop`."""

    def __init__(self, core: Any, namespace: str, selector: str, known: Iterable[str],
                 on_running: Callable[[Any], None], server: str = "") -> None:
        self.core = core
        self.namespace = namespace
        self.selector = selector
        self.on_running = on_running
        self.server = server
        self.error = ""
        self._known = set(known)
        self._stopping = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (in a thread of its own)."""
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"podwatch-{self.selector}")
        self._thread.start()

    def stop(self, join_timeout: float = 2.0) -> None:
        """Stop watching; no ``on_running`` call starts after this returns (but one under way
        may finish)."""
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()  # shuts the socket down: the blocked read returns
        if self._thread is not None:
            self._thread.join(join_timeout)

    def _run(self) -> None:
        try:
            version = self._list()
            while not self._stopping.is_set():
                version = self._watch_from(version)
        except Exception as exc:  # reported, never fatal: the followed pods go on
            if not self._stopping.is_set():
                self.error = f"watching pods {self.selector}: {exc}"
                log.debug(self.error)

    def _list(self) -> str:
        with api_call(Call("list", "pods", self.namespace, "", self.server)):
            listed = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector,
                                                   _request_timeout=30)
        for pod in listed.items:
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
                                            label_selector=self.selector,
                                            resource_version=version,
                                            timeout_seconds=WATCH_SECONDS,
                                            _request_timeout=WATCH_SECONDS + 30):
                if self._stopping.is_set():
                    break
                if event["type"] == "ERROR":  # e.g. the version is too old
                    return ""
                pod = event["object"]
                version = pod.metadata.resource_version
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._seen(pod)
        return version

    def _seen(self, pod: Any) -> None:
        if self._stopping.is_set() or pod.metadata.uid in self._known or not is_running(pod):
            return
        self._known.add(pod.metadata.uid)
        self.on_running(pod)
