"""Following the logs of many pods and containers at once, through the API server.

One thread per (pod, container) reads ``pods/log?follow=true``; each complete line is handed to
a callback with its source. Without ``since``, only lines written after :meth:`start` returns
are wanted: each stream is opened with ``tailLines=0`` and :meth:`start` waits until every
stream is open, so a request made after it is never missed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kdiag.kube.errors import Call, api_call
from kdiag.kube.pods import PodRef
from kdiag.targets.base import TargetError

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


@dataclass
class _Stream:
    source: LogSource
    response: Any = None
    opened: threading.Event = field(default_factory=threading.Event)
    error: str = ""
    lines: int = 0


class LogFollower:
    """Follows ``sources`` until :meth:`stop`; ``on_line`` is called from reader threads."""

    def __init__(self, core: Any, sources: list[LogSource], on_line: Callable[[LogLine], None],
                 since_seconds: int | None = None, server: str = "") -> None:
        self.core = core
        self.server = server
        self.since_seconds = since_seconds
        self.on_line = on_line
        self._streams = [_Stream(s) for s in sources]
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def errors(self) -> list[str]:
        """Streams that failed: ``pod/container: reason``."""
        return [f"{s.source.label}: {s.error}" for s in self._streams if s.error]

    def start(self) -> None:
        """Open every stream (in parallel) and return once all are open; TargetError if one
        cannot be opened (the others are stopped)."""
        for stream in self._streams:
            thread = threading.Thread(target=self._follow, args=(stream,), daemon=True,
                                      name=f"logs-{stream.source.label}")
            thread.start()
            self._threads.append(thread)
        for stream in self._streams:
            if not stream.opened.wait(OPEN_TIMEOUT):
                stream.error = stream.error or f"no log stream within {OPEN_TIMEOUT:g}s"
            if stream.error:
                self.stop(0)
                raise TargetError(f"logs of {stream.source.label}: {stream.error}")

    def _open(self, stream: _Stream) -> Any:
        src = stream.source
        kwargs: dict[str, Any] = {"container": src.container, "follow": True,
                                  "timestamps": True, "_preload_content": False}
        if self.since_seconds is not None:
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
        for stream in self._streams:
            if stream.response is not None:
                _abort(stream.response)
        for thread in self._threads:
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
