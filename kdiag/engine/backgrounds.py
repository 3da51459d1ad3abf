"""Work steps keep up after they return (servers, redirects, log followers), until stopped."""

from __future__ import annotations

from collections.abc import Callable

from kdiag.engine.context import StepRuntime
from kdiag.steps.base import Background


class Backgrounds:
    """The run's background work, by the step that started it; stopped newest first."""

    def __init__(self) -> None:
        self._entries: list[tuple[StepRuntime, Background]] = []

    def add(self, runtime: StepRuntime, background: Background) -> None:
        """Keep ``background`` up until :meth:`stop` or :meth:`stop_all`."""
        self._entries.append((runtime, background))

    def stop(self, qualified: tuple[str, ...]) -> bool:
        """Stop the work of the step named ``qualified`` now (the ``stop`` step); False if
        none is running."""
        for entry in self._entries:
            runtime, background = entry
            if (*runtime.ref.path, runtime.ref.name) == qualified:
                self._entries.remove(entry)
                try:
                    background.stop()
                finally:
                    runtime.flush()
                return True
        return False

    def stop_all(self, failed: Callable[[StepRuntime, Exception], None]) -> None:
        """Stop everything, newest first; one failing stop (reported to ``failed``) does not
        keep the others running."""
        for runtime, background in reversed(self._entries):
            try:
                background.stop()
            except Exception as exc:
                failed(runtime, exc)
            runtime.flush()
        self._entries.clear()
