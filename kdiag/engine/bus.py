"""The event bus: masks each event once and hands it to every reporter."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from kdiag.engine.events import Event
from kdiag.engine.masking import Masker


class EventSink(Protocol):
    """Anything that consumes events (every reporter is one)."""

    def handle(self, event: Event) -> None: ...


class EventBus:
    """Delivers events to sinks in order; safe to call from background threads."""

    def __init__(self, sinks: Sequence[EventSink] = (), masker: Masker | None = None) -> None:
        self.sinks = list(sinks)
        self.masker = masker or Masker()
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        """Mask ``event`` and deliver it to every sink."""
        masked = self.masker.value(event)
        with self._lock:
            for sink in self.sinks:
                sink.handle(masked)
