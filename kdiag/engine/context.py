"""The per-step context the engine hands to a step type (see :class:`kdiag.steps.base.StepContext`).

It reaches its run through :class:`RunScope`, the part of :class:`kdiag.engine.runner.Run`
a step may use (so this module does not import the runner).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kdiag.engine.artifacts import MaskedFile, step_folder_name
from kdiag.engine.bus import EventBus
from kdiag.engine.events import StepNote, StepOutput, StepProgress, StepRef
from kdiag.engine.frame import Frame
from kdiag.engine.interaction import Interaction
from kdiag.engine.supervision import Supervisor
from kdiag.language.templating import Renderer
from kdiag.session.output import DEFAULT_MAX_OUTPUT
from kdiag.steps.base import StepOutcome

if TYPE_CHECKING:
    from kdiag.language.model import StepSpec
    from kdiag.targets.base import TargetSession

MAX_KEPT_OUTPUT = 256 * 1024
"""Characters of a step's output kept for its failure report (the tail is kept)."""
PROGRESS_INTERVAL = 0.2
"""Seconds between two :class:`StepProgress` events of one step: a busy redirect changes its
counters thousands of times a second; reports need them per interval (a timeline)."""
PARTIAL_LINE_WAIT = 0.1
"""Seconds a line without its end waits for the rest before it is shown anyway (a prompt)."""
MAX_PARTIAL_LINE = 64 * 1024
"""Characters of a line without end held at most: a longer one is shown as it comes."""


class RunScope(Protocol):
    """What a step's context uses of its run."""

    bus: EventBus
    interaction: Interaction | None
    renderer: Renderer
    supervisor: Supervisor

    def artifacts_root(self) -> Path:
        """The folder for files steps write."""

    def target_session(self, ref: StepRef | None = None) -> TargetSession:
        """The target session, opened on first use."""

    def include(self, parent: Frame, ref: StepRef, file: str,
                params: dict[str, Any]) -> StepOutcome:
        """Run another runbook inside this run."""

    def run_children(self, frame: Frame, ref: StepRef, children: tuple[StepSpec, ...]) -> bool:
        """Run steps nested in a step; False if one failed."""

    def stop_background(self, qualified: tuple[str, ...]) -> bool:
        """Stop one step's background work now."""


@dataclass
class StepRuntime:
    """Implements StepContext for one attempt of one step."""

    run: RunScope
    frame: Frame
    ref: StepRef
    spec: StepSpec
    deadline: float | None
    background: bool = False
    max_output: int = DEFAULT_MAX_OUTPUT
    cancelled: threading.Event = field(default_factory=threading.Event)
    kept: list[str] = field(default_factory=list)
    kept_size: int = 0
    pending: dict[str, str] = field(default_factory=dict)
    """Per stream, output held back: a line without its end yet, or what may be the start of
    a secret."""
    partial_timers: set[str] = field(default_factory=set)
    """The streams whose held line waits for :meth:`_show_partial`."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    withheld: int = 0
    """Characters of output not shown: the step is marked ``secret``."""
    progress_due: StepProgress | None = None
    """Counters not sent yet (see :meth:`progress`)."""
    progress_sent: float = 0.0
    pod_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Each pod's last counters, when the step runs on several (their sum is the step's)."""

    @property
    def runbook_dir(self) -> Path:
        return self.frame.runbook.directory

    @property
    def interactive(self) -> bool:
        return self.run.interaction is not None

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def output(self, text: str, stream: str = "stdout") -> None:
        if not text:
            return
        if self.spec.secret:  # what is secret in it is known only once the step is over
            with self.lock:
                self.withheld += len(text)
            return
        with self.lock:
            masked, held = self.run.bus.masker.split(self.pending.pop(stream, "") + text)
            # Whole lines only: stdout and stderr go to one output, and a line of one that came
            # in two chunks must not have a line of the other put inside it.
            end = masked.rfind("\n") + 1
            if len(masked) - end > MAX_PARTIAL_LINE:
                end = len(masked)
            rest = masked[end:] + held
            if rest:
                self.pending[stream] = rest
                self._wait_for_line_end(stream)
            self._emit(stream, masked[:end])

    def _wait_for_line_end(self, stream: str) -> None:
        """Show ``stream``'s held line :data:`PARTIAL_LINE_WAIT` from now if it is still held
        (caller holds the lock)."""
        if stream in self.partial_timers:
            return
        self.partial_timers.add(stream)
        timer = threading.Timer(PARTIAL_LINE_WAIT, self._show_partial, (stream,))
        timer.daemon = True
        timer.start()

    def _show_partial(self, stream: str) -> None:
        with self.lock:
            self.partial_timers.discard(stream)
            masked, held = self.run.bus.masker.split(self.pending.pop(stream, ""))
            if held:  # a secret's start stays held for the next chunk (or flush)
                self.pending[stream] = held
            self._emit(stream, masked)

    def progress(self, counts: dict[str, int]) -> None:
        """The step's counters changed: sent now, or with the next change at most
        :data:`PROGRESS_INTERVAL` later (a timer sends the last one; :meth:`flush` too)."""
        event = StepProgress(self.ref, time.time(), dict(counts))
        with self.lock:
            waiting = self.progress_due is not None
            self.progress_due = event
            wait = self.progress_sent + PROGRESS_INTERVAL - time.monotonic()
            if waiting:
                return  # the timer started for the first of them sends this one
            if wait > 0:
                timer = threading.Timer(wait, self._send_progress)
                timer.daemon = True
                timer.start()
                return
        self._send_progress()

    def pod_progress(self, pod: str, counts: dict[str, int]) -> None:
        """One pod's counters changed: the step's are the sum over its pods."""
        with self.lock:
            self.pod_counts[pod] = dict(counts)
            total: dict[str, int] = {}
            for each in self.pod_counts.values():
                for key, value in each.items():
                    total[key] = total.get(key, 0) + value
        self.progress(total)

    def _send_progress(self) -> None:
        with self.lock:
            event, self.progress_due = self.progress_due, None
            self.progress_sent = time.monotonic()
        if event is not None:
            self.run.bus.emit(event)

    def flush(self) -> None:
        """Emit output held back at the end of a chunk (the step, or its background, ended)."""
        self._send_progress()
        with self.lock:
            pending, self.pending = self.pending, {}
            for stream, text in pending.items():
                self._emit(stream, self.run.bus.masker.text(text))
            withheld, self.withheld = self.withheld, 0
        if withheld:
            self.note(f"{withheld} characters of output withheld: the step is marked secret")

    def _emit(self, stream: str, masked: str) -> None:
        if not masked:
            return
        self.kept.append(masked)
        self.kept_size += len(masked)
        while self.kept_size > MAX_KEPT_OUTPUT and len(self.kept) > 1:
            self.kept_size -= len(self.kept.pop(0))
        self.run.bus.emit(StepOutput(self.ref, stream, masked))

    def captured(self) -> str:
        """The output kept so far (its tail, when there was a lot)."""
        return "".join(self.kept)

    def note(self, message: str) -> None:
        self.run.bus.emit(StepNote(self.ref, message))

    def add_secrets(self, values: list[str]) -> None:
        self.run.bus.masker.add_all(values)

    def artifact_path(self, name: str) -> Path:
        folder = self.run.artifacts_root() / step_folder_name(self.ref.seq, self.ref.qualified_name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def open_artifact(self, name: str) -> MaskedFile:
        return MaskedFile(self.artifact_path(name), self.run.bus.masker)

    def target(self) -> TargetSession:
        return self.run.target_session(self.ref)

    def evaluate(self, expression: str) -> Any:
        return self.run.renderer.evaluate(expression, self.frame.scope())

    def pause(self, message: str) -> bool:
        if self.run.interaction is None:
            return False
        self.run.interaction.pause(self.ref, message)
        return True

    def include(self, file: str, params: dict[str, Any]) -> StepOutcome:
        return self.run.include(self.frame, self.ref, file, params)

    def run_children(self) -> bool:
        return self.run.run_children(self.frame, self.ref, self.spec.children)

    def stop_background(self, name: str) -> bool:
        return self.run.stop_background((*self.frame.path, name))
