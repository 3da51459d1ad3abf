"""Following the logs of many pods and containers at once, through the API server.

One thread per (pod, container) reads ``pods/log?follow=true``; each complete line is handed to
a callback with its source. Without ``since``, only lines written after :meth:`start` returns
are wanted: each stream is opened with ``tailLines=0`` and :meth:`start` waits until every
stream is open, so a request made after it is never missed. With :class:`NewPods`, pods that
start running under the selector later are followed too, from their first line.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kdiag.errors import TargetError
from kdiag.kube.errors import Call, api_call
from kdiag.kube.pods import PodRef, to_ref
from kdiag.kube.podwatch import PodWatch

OPEN_TIMEOUT = 30.0


@dataclass(frozen=True)
class LogSource:
    """One container of one pod."""

    namespace: str
    pod: str
    container: str

    @property
    def label(self) -> str:
        """``pod/container``: the console prefix and the artifact's name."""
        return f"{self.pod}/{self.container}"


@dataclass(frozen=True)
class LogLine:
    """One line and where it came from (``time`` is the kubelet's RFC 3339 timestamp)."""

    source: LogSource
    text: str
    time: str = ""

    def to_dict(self) -> dict[str, str]:
        """Plain data for templates: pod, container, text, time."""
        return {"pod": self.source.pod, "container": self.source.container,
                "text": self.text, "time": self.time}


def sources_for(pods: list[PodRef], container: str | None) -> list[LogSource]:
    """Each pod's ``container`` (``all``: every container; None: the pod's default one)."""
    found: list[LogSource] = []
    for pod in pods:
        if container == "all":
            names = list(pod.containers)
        elif container:
            if container not in pod.containers:
                raise TargetError(f"pod {pod.namespace}/{pod.name} has no container "
                                  f"{container!r} (containers: {', '.join(pod.containers)})")
            names = [container]
        else:
            names = [pod.container]
        found.extend(LogSource(pod.namespace, pod.name, name) for name in names)
    return found


@dataclass(frozen=True)
class NewPods:
    """Also follow pods that start running under ``selector`` after :meth:`LogFollower.start`
    (``container`` as for :func:`sources_for`); ``on_source`` hears of each new source first
    (from the watching thread)."""

    namespace: str
    selector: str
    container: str | None
    known: frozenset[str]  # UIDs of the pods followed from the start
    on_source: Callable[[LogSource], None] = lambda source: None


@dataclass
class _Stream:
    source: LogSource
    from_start: bool = False  # a pod found later: its whole log
    response: Any = None
    opened: threading.Event = field(default_factory=threading.Event)
    error: str = ""
    lines: int = 0


class LogFollower:
    """Follows ``sources`` until :meth:`stop`; ``on_line`` is called from reader threads."""

    def __init__(self, core: Any, sources: list[LogSource], on_line: Callable[[LogLine], None],
                 since_seconds: int | None = None, server: str = "",
                 new_pods: NewPods | None = None) -> None:
        self.core = core
        self.server = server
        self.since_seconds = since_seconds
        self.on_line = on_line
        self._streams = [_Stream(s) for s in sources]
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # _streams and _threads grow as new pods come
        self._stopping = threading.Event()
        self._new_pods = new_pods
        self._watch: PodWatch | None = None
        self._watch_errors: list[str] = []

    @property
    def sources(self) -> list[LogSource]:
        """Everything followed so far (new pods included)."""
        with self._lock:
            return [s.source for s in self._streams]

    @property
    def errors(self) -> list[str]:
        """Streams that failed: ``pod/container: reason`` (and a failed pod watch)."""
        with self._lock:
            failed = [f"{s.source.label}: {s.error}" for s in self._streams if s.error]
        watch_error = [self._watch.error] if self._watch is not None and self._watch.error else []
        return failed + self._watch_errors + watch_error

    def start(self) -> None:
        """Open every stream (in parallel) and return once all are open; TargetError if one
        cannot be opened (the others are stopped). Then watch for new pods, if asked to."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            self._start_thread(stream)
        for stream in streams:
            if not stream.opened.wait(OPEN_TIMEOUT):
                stream.error = stream.error or f"no log stream within {OPEN_TIMEOUT:g}s"
            if stream.error:
                self.stop(0)
                raise TargetError(f"logs of {stream.source.label}: {stream.error}")
        wanted = self._new_pods
        if wanted is not None:
            self._watch = PodWatch(self.core, wanted.namespace, wanted.selector, wanted.known,
                                   self._pod_started, self.server)
            self._watch.start()

    def _start_thread(self, stream: _Stream) -> None:
        thread = threading.Thread(target=self._follow, args=(stream,), daemon=True,
                                  name=f"logs-{stream.source.label}")
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _pod_started(self, pod: Any) -> None:
        """A new pod runs under the selector: follow its containers from their first line."""
        wanted = self._new_pods
        assert wanted is not None
        try:
            container = wanted.container if wanted.container != "all" else None
            sources = sources_for([to_ref(pod, container)], wanted.container)
        except TargetError as exc:  # e.g. it lacks the container asked for
            self._watch_errors.append(str(exc))
            return
        for source in sources:
            stream = _Stream(source, from_start=True)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._streams.append(stream)
            wanted.on_source(source)
            self._start_thread(stream)

    def _open(self, stream: _Stream) -> Any:
        src = stream.source
        kwargs: dict[str, Any] = {"container": src.container, "follow": True,
                                  "timestamps": True, "_preload_content": False}
        if stream.from_start:
            pass  # a pod that started while we followed: all of it is new
        elif self.since_seconds is not None:
            kwargs["since_seconds"] = max(1, int(self.since_seconds))
        else:
            kwargs["tail_lines"] = 0
        with api_call(Call("get", "pods/log", src.namespace, src.pod, self.server)):
            return self.core.read_namespaced_pod_log(src.pod, src.namespace, **kwargs)

    def _follow(self, stream: _Stream) -> None:
        try:
            stream.response = self._open(stream)
        except Exception as exc:
            stream.error = str(exc)
            stream.opened.set()
            return
        stream.opened.set()
        buf = b""
        try:
            for chunk in stream.response.stream(64 * 1024, decode_content=False):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    self._emit(stream, raw)
        except Exception as exc:
            if not self._stopping.is_set():
                stream.error = f"stream ended: {exc}"
        if buf and not self._stopping.is_set():
            self._emit(stream, buf)

    def _emit(self, stream: _Stream, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        stamp, sep, rest = text.partition(" ")
        if sep and stamp[:4].isdigit() and "T" in stamp:
            text, time = rest, stamp
        else:
            time = ""
        stream.lines += 1
        self.on_line(LogLine(stream.source, text, time))

    def stop(self, join_timeout: float = 2.0) -> None:
        """Close every stream and wait (briefly) for the readers to finish."""
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop(join_timeout)
        with self._lock:
            streams, threads = list(self._streams), list(self._threads)
        for stream in streams:
            if stream.response is not None:
                _abort(stream.response)
        for thread in threads:
            thread.join(join_timeout)


def _abort(response: Any) -> None:
    """Close a streaming urllib3 response, waking the thread blocked reading it (closing the
    socket alone does not interrupt a blocked recv)."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        response.close()
