"""What a step sees when it runs on one pod of a fan-out (see :mod:`kdiag.engine.fanout`).

The step's own context, with the pod put in: ``target()`` is that pod's session, output goes
out whole lines at a time, each prefixed ``[pod]`` (pods write at the same time; a line of one
never cuts into another's), notes name the pod, and files go to a folder of the pod's own in
the step's artifacts.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdiag.engine.artifacts import MaskedFile, slug
from kdiag.engine.context import MAX_PARTIAL_LINE, StepRuntime
from kdiag.steps.base import StepOutcome

if TYPE_CHECKING:
    from kdiag.targets.base import Fleet, Replica, TargetSession

class PodContext:
    """Implements StepContext for one pod of a fan-out (``joined``: a pod that joined the
    fleet after the step ran: its work is background work, with no step deadline)."""

    def __init__(self, runtime: StepRuntime, replica: Replica, fleet: Fleet, *,
                 joined: bool = False) -> None:
        self.runtime = runtime
        self.replica = replica.name
        self._member = replica
        self._fleet = fleet
        self._joined = joined
        self._prefix = f"[{replica.name}] "
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()
        self.cancelled = runtime.cancelled
        self.background = runtime.background
        self.max_output = runtime.max_output

    @property
    def runbook_dir(self) -> Path:
        return self.runtime.runbook_dir

    @property
    def interactive(self) -> bool:
        return self.runtime.interactive

    def remaining(self) -> float | None:
        return None if self._joined else self.runtime.remaining()

    def output(self, text: str, stream: str = "stdout") -> None:
        if not text:
            return
        with self._lock:
            pending = self._partial.pop(stream, "") + text
            *lines, rest = pending.split("\n")
            if len(rest) > MAX_PARTIAL_LINE:
                lines.append(rest)
                rest = ""
            if rest:
                self._partial[stream] = rest
            if lines:
                self.runtime.output("".join(f"{self._prefix}{line}\n" for line in lines),
                                    stream)

    def flush(self) -> None:
        """Show what is left of a line without end."""
        with self._lock:
            pending, self._partial = self._partial, {}
            for stream, rest in pending.items():
                self.runtime.output(f"{self._prefix}{rest}\n", stream)

    def note(self, message: str) -> None:
        self.runtime.note(f"{self.replica}: {message}")

    def progress(self, counts: dict[str, int]) -> None:
        self.runtime.pod_progress(self.replica, counts)

    def add_secrets(self, values: list[str]) -> None:
        self.runtime.add_secrets(values)

    def artifact_path(self, name: str) -> Path:
        folder = self.runtime.artifact_path(slug(self.replica, 253))
        folder.mkdir(exist_ok=True)
        return folder / name

    def open_artifact(self, name: str) -> MaskedFile:
        return MaskedFile(self.artifact_path(name), self.runtime.run.bus.masker)

    def target(self) -> TargetSession:
        return self._fleet.open(self._member)

    def evaluate(self, expression: str) -> Any:
        return self.runtime.evaluate(expression)

    def pause(self, message: str) -> bool:
        return self.runtime.pause(message)

    def include(self, file: str, params: dict[str, Any]) -> StepOutcome:
        return self.runtime.include(file, params)

    def run_children(self) -> bool:
        return self.runtime.run_children()

    def stop_background(self, name: str) -> bool:
        return self.runtime.stop_background(name)
