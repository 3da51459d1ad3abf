"""How something kdiag keeps up says that it died on its own: a redirect, a forward, a log
follower, a capture, a local process, the target itself.

The owner of the work calls :meth:`Lifeline.fail` once it sees the work end without being
asked to (a stream ended, a process exited, the pod was deleted); whoever watches it (the
engine's supervisor, an ad-hoc command) is called back at once from that thread, so nothing
has to poll. Only the first cause counts: later ones are consequences.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loss:
    """Why something died: one line, and whether the environment is to blame."""

    cause: str
    environmental: bool = True
    """True: the target, the manager, the cluster or the network (exit 3); False: the work
    itself failed (e.g. a local process exited with an error; exit 1)."""
    at: float = field(default_factory=time.time)
    """When it was seen (seconds since the epoch)."""


Listener = Callable[[Loss], None]

EXPLAIN_WAIT = 0.4
"""Seconds a lost stream to the manager waits for the target to say why (the pod watch sees
a deleted pod or the manager container's end). Part of the 2 s from the event to the end of
the run: a manager killed in a pod is often noticed by gRPC keepalive only (the port-forward
does not pass the pod side's close on), about 1.3 s after it died; a longer wait (it was 1 s)
added to that when the pod watch lagged, and a killed manager ended a run 2.57 s after the
kill on a busy machine."""


class Lifeline:
    """Tells its listeners, once, that the work died and why. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loss: Loss | None = None
        self._listeners: list[Listener] = []
        self._dead = threading.Event()

    @property
    def loss(self) -> Loss | None:
        """The cause, once it died (None while alive)."""
        return self._loss

    def fail(self, cause: str, *, environmental: bool = True) -> bool:
        """Record the death and call every listener; False if it had already died."""
        with self._lock:
            if self._loss is not None:
                return False
            self._loss = loss = Loss(cause, environmental)
            listeners = list(self._listeners)
            self._dead.set()
        for listener in listeners:
            _call(listener, loss)
        return True

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(loss)`` when it dies (at once if it already has); returns a function
        that stops listening."""
        with self._lock:
            loss = self._loss
            if loss is None:
                self._listeners.append(listener)
        if loss is not None:
            _call(listener, loss)
            return lambda: None

        def forget() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return forget

    def wait(self, timeout: float | None = None) -> Loss | None:
        """Block until it dies (or ``timeout`` passes); the loss, or None."""
        self._dead.wait(timeout)
        return self._loss


def _call(listener: Listener, loss: Loss) -> None:
    try:
        listener(loss)
    except Exception:  # a listener's bug must not hide the loss from the others
        import logging

        logging.getLogger(__name__).exception("lifeline listener failed")


def exit_status(code: int | None) -> str:
    """``exited with code 2`` / ``killed by SIGKILL`` for a Popen return code."""
    if code is None:
        return "exited"
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
