"""Executing a runbook: the step loop, finally steps, nested runbooks, the target session.

The engine knows nothing about what a step does (that is :mod:`kdiag.steps`) nor how results
are shown (that is :mod:`kdiag.reports`): it renders each step's templates, runs it with its
controls and emits events. One step's attempts are :mod:`.attempts`, the work steps keep up
is :mod:`.backgrounds`, asking the user in ``--step`` mode is :mod:`.stepmode`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdiag.engine.abort import Abort
from kdiag.engine.artifacts import new_folder
from kdiag.engine.attempts import Done, StepAttempts
from kdiag.engine.backgrounds import Backgrounds
from kdiag.engine.bus import EventBus
from kdiag.engine.context import StepRuntime
from kdiag.engine.events import (
    TARGET,
    AssertionResult,
    BackgroundFailed,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFinished,
    StepNote,
    StepRef,
    StepStatus,
)
from kdiag.engine.frame import Frame
from kdiag.engine.interaction import Interaction
from kdiag.engine.stepmode import StepMode
from kdiag.engine.supervision import Supervisor, status_of
from kdiag.errors import (
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EnvironmentProblem,
    RunbookError,
)
from kdiag.language.model import Runbook, StepSpec
from kdiag.language.params import resolve_params
from kdiag.language.runbook import Loader
from kdiag.language.templating import Renderer, TemplateError
from kdiag.session.output import DEFAULT_MAX_OUTPUT
from kdiag.steps import step_types
from kdiag.steps.base import StepFailed, StepOutcome, StepType

if TYPE_CHECKING:
    from kdiag.targets.base import TargetSession

MAX_RESULT_TEXT = 64 * 1024


@dataclass
class RunOptions:
    """How to run (from the command line)."""

    start_at: str | None = None
    artifacts_dir: Path | None = None
    default_timeout: float | None = None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    max_output: int = DEFAULT_MAX_OUTPUT
    """Bytes of each output stream a step keeps in memory (``--max-output``)."""


def _summarise(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_RESULT_TEXT:
        return value[:MAX_RESULT_TEXT] + f"... ({len(value)} chars)"
    if isinstance(value, dict):
        return {k: _summarise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_summarise(v) for v in value]
    return value


class Run:
    """One execution of a runbook: owns the event bus, the target session and backgrounds."""

    def __init__(
        self,
        bus: EventBus,
        loader: Loader,
        options: RunOptions | None = None,
        interaction: Interaction | None = None,
        open_target: Callable[[dict[str, Any]], TargetSession] | None = None,
    ) -> None:
        self.bus = bus
        self.loader = loader
        self.options = options or RunOptions()
        self.interaction = interaction
        self.open_target = open_target
        self.renderer = Renderer()
        self.supervisor = Supervisor(self._background_failed)
        self.backgrounds = Backgrounds(self.supervisor)
        self.step_mode = StepMode(interaction, self.renderer)
        self._attempts = StepAttempts(self, loader.catalog.schema, self.options.default_timeout,
                                      self.options.max_output)
        self._session: TargetSession | None = None
        self._target_spec: dict[str, Any] = {}
        # The top frame's ``target`` (shared by included runbooks): the spec, and once the
        # session is open, what it found (the pod, its namespace, the API server...).
        self._target_facts: dict[str, Any] = {}
        self._target_lock = threading.Lock()
        self._started_at = time.time()
        self._run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(self._started_at))
        self._skip_until = self.options.start_at
        self._seq = 0
        # Steps with continue_on_error under way: a failure nested in one (a group's child, an
        # included runbook's step) is ignored too, so no report counts a failure in a run
        # that passed (a JUnit failure would fail a CI build that exited 0).
        self._ignoring = 0
        self._artifacts: Path | None = None
        self.counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()  # background failures come from other threads
        self._finished: set[int] = set()  # seq of the steps whose end was reported

    # -- public ---------------------------------------------------------------------------

    def execute(self, runbook: Runbook, params: dict[str, Any]) -> int:
        """Run ``runbook`` with resolved ``params``; returns the CLI exit code."""
        frame = self._top_frame(runbook, params)
        self.bus.emit(RunStarted(runbook.name, runbook.file, dict(params),
                                 self._describe_target(), len(runbook.all_steps()),
                                 self._started_at))
        status: RunStatus = "passed"
        message = ""
        try:
            self._run_frame(frame)
            fatal = self.supervisor.fatal
            if fatal is not None:  # lost during the finally steps (or just as the last step ended)
                status, message = status_of(fatal), fatal.line
            elif frame.failed:
                status, message = "failed", "a step failed"
        except Abort as abort:
            status, message = abort.status, abort.message
        except KeyboardInterrupt:
            status, message = "interrupted", "interrupted"
        finally:
            self._teardown()
        codes = {"passed": EXIT_OK, "failed": EXIT_FAILED, "error": EXIT_ENVIRONMENT,
                 "interrupted": EXIT_INTERRUPTED}
        exit_code = codes.get(status, EXIT_FAILED)
        self.bus.emit(RunFinished(status, exit_code, time.time() - self._started_at,
                                  dict(self.counts), message))
        return exit_code

    def target_session(self, ref: StepRef | None = None) -> TargetSession:
        """The target session, opened on first use by a step that needs it (``ref``: the
        step, which gets notes on what opening it found)."""
        with self._target_lock:
            if self._session is None:
                if self.open_target is None or not self._target_spec:
                    raise EnvironmentProblem(
                        "this runbook has no target: add a 'target:' section or pass --pid")
                if ref is not None:  # injecting a manager can take a while: say what happens
                    self.bus.emit(StepNote(ref, f"opening the target: {self._describe_target()}"))
                self._session = self.open_target(self._target_spec)
                self._target_facts.update(getattr(self._session, "info", {}))
                self._session.on_notice(lambda text: self.bus.emit(StepNote(TARGET, text)))
                self.supervisor.watch_target(self._session.watch())
                if ref is not None:
                    self.bus.emit(StepNote(ref, f"target: {self._session.summary()}"))
            return self._session

    def artifacts_root(self) -> Path:
        """The folder for files steps write (``--artifacts``, else ``./kdiag-artifacts/RUN``,
        ``RUN-2``... when a run started in the same second has it)."""
        if self._artifacts is None:
            base = self.options.artifacts_dir
            if base is None:
                base = new_folder(Path("kdiag-artifacts"), self._run_id)
            base.mkdir(parents=True, exist_ok=True)
            self._artifacts = base
        return self._artifacts

    def include(self, parent: Frame, ref: StepRef, file: str, params: dict[str, Any]) -> StepOutcome:
        """Run another runbook inside this run (the ``include`` step)."""
        found = self.loader.find(file, parent.runbook.directory)
        if found is None:
            raise StepFailed(f"included runbook {file!r} not found")
        if found.resolve() in parent.files:
            raise StepFailed(f"include cycle: {' -> '.join(p.name for p in parent.files)} -> {found.name}")
        try:
            runbook = self.loader.load(str(found))
            values = resolve_params(runbook, values=params)
        except RunbookError as exc:
            raise StepFailed(str(exc)) from None
        for secret in values.secrets:
            self.bus.masker.add(secret)
        frame = Frame(runbook, values.values, (*parent.path, ref.name), (*parent.files, found.resolve()),
                      env=parent.env, target=parent.target, run_info=parent.run_info)
        self._run_frame(frame)  # an Abort goes on up: the include step ends with its status
        outputs = self._render_outputs(frame)
        result = {"outputs": outputs, "steps": frame.results, "file": str(found)}
        if frame.failed:
            return StepOutcome(ok=False, result=result, message=f"{runbook.name}: a step failed")
        return StepOutcome(result=result)

    def run_children(self, frame: Frame, ref: StepRef, children: tuple[StepSpec, ...]) -> bool:
        """Run steps nested in a step, in its frame, named under it; False if one failed.

        A failed child fails the parent step, whose own status (maybe ignored) then decides.
        """
        saved_path, saved_failed = frame.path, frame.failed
        frame.path, frame.failed = (*saved_path, ref.name), False
        try:
            self._run_steps(frame, list(children))
            return not frame.failed
        finally:
            frame.path, frame.failed = saved_path, saved_failed

    def stop_background(self, qualified: tuple[str, ...]) -> bool:
        """Stop one step's background work before the run ends (the ``stop`` step)."""
        return self.backgrounds.stop(qualified)

    # -- frames -----------------------------------------------------------------------------

    def _top_frame(self, runbook: Runbook, params: dict[str, Any]) -> Frame:
        env = {name: self.options.env[name] for name in runbook.env if name in self.options.env}
        frame = Frame(runbook, params, (), (Path(runbook.file).resolve(),), env=env,
                      run_info={"id": self._run_id, "runbook": runbook.name, "file": runbook.file})
        if runbook.target:
            try:
                self._target_spec = self.renderer.render(runbook.target, frame.scope())
            except TemplateError as exc:
                raise RunbookError(f"{runbook.file}: target: {exc}") from None
            kind = next(iter(self._target_spec))
            frame.target.update({"kind": kind, **self._target_spec[kind]})
        self._target_facts = frame.target
        return frame

    def _describe_target(self) -> str | None:
        if not self._target_spec:
            return None
        kind, spec = next(iter(self._target_spec.items()))
        return f"{kind} ({', '.join(f'{k}={v}' for k, v in spec.items())})"

    def _run_frame(self, frame: Frame) -> None:
        """The main steps, then the finally steps (always), of one frame."""
        try:
            self._run_steps(frame, frame.runbook.steps)
        except (Abort, KeyboardInterrupt):
            with contextlib.suppress(Abort):  # the first cause is the run's
                self._run_finally(frame)
            raise
        self._run_finally(frame)

    def _run_finally(self, frame: Frame) -> None:
        """Every finally step, also after one of them met an environment error (the first
        such error is raised at the end); lost background work does not cut them."""
        first: Abort | None = None
        with self.supervisor.disarmed():
            for spec in frame.runbook.finally_steps:
                try:
                    self._run_step(frame, spec, always=True)
                except Abort as abort:
                    first = first or abort
        if first is not None:
            raise first

    def _run_steps(self, frame: Frame, steps: list[StepSpec]) -> None:
        for position, spec in enumerate(steps):
            fatal = self.supervisor.fatal_now()
            if fatal is not None:  # background work or the target was lost between steps
                self._skip_rest(frame, steps[position:], fatal.line)
                raise Abort(status_of(fatal), fatal.line)
            if frame.failed:
                self._skip_rest(frame, steps[position:], "an earlier step failed")
                return
            try:
                self._run_step(frame, spec, always=False)
            except Abort as abort:
                self._skip_rest(frame, steps[position + 1:], abort.message)
                raise
            except KeyboardInterrupt:
                self._skip_rest(frame, steps[position + 1:], "interrupted")
                raise

    def _skip_rest(self, frame: Frame, steps: list[StepSpec], reason: str) -> None:
        """Report steps that will not run, so every report lists every step."""
        for spec in steps:
            self._finish(frame, self._ref(frame, spec), "skipped", 0.0, 0, f"not run: {reason}")

    def _render_outputs(self, frame: Frame) -> dict[str, Any]:
        try:
            rendered = self.renderer.render(frame.runbook.outputs, frame.scope())
        except TemplateError as exc:
            raise StepFailed(f"outputs of {frame.runbook.name}: {exc}") from None
        return dict(rendered)

    # -- one step ---------------------------------------------------------------------------

    def _ref(self, frame: Frame, spec: StepSpec) -> StepRef:
        self._seq += 1
        return StepRef(spec.index, spec.name, spec.kind, frame.path, spec.phase, self._seq)

    def _run_step(self, frame: Frame, spec: StepSpec, always: bool) -> None:
        ref = self._ref(frame, spec)
        began = time.monotonic()
        try:
            self._run_step_as(ref, frame, spec, always)
        except KeyboardInterrupt:
            # The interrupted step (or the one the user quit before) still gets its end.
            quit_ = self.step_mode.quit
            self._finish(frame, ref, "skipped" if quit_ else "failed", 0.0, 0,
                         "not run: quit" if quit_ else "interrupted")
            raise
        except Abort as abort:  # from steps it ran (group, include, logs)
            if ref.seq not in self._finished:
                self._finish(frame, ref, "error" if abort.status == "error" else "failed",
                             time.monotonic() - began, 1, abort.message)
            frame.failed = True
            raise

    def _run_step_as(self, ref: StepRef, frame: Frame, spec: StepSpec, always: bool) -> None:
        step_type = step_types()[spec.kind]
        if self._skip_until is not None and not always:
            if spec.name != self._skip_until:
                self._finish(frame, ref, "skipped", 0.0, 0, "before --start-at", spec)
                return
            self._skip_until = None
        if not self.step_mode.before(ref, step_type, spec, frame):
            self._finish(frame, ref, "skipped", 0.0, 0, "skipped by the user", spec)
            return
        try:
            run_it = self._when(frame, spec)
        except TemplateError as exc:
            self._finish(frame, ref, "failed", 0.0, 0, f"when: {exc}")
            frame.failed = True
            return
        if not run_it:
            self._finish(frame, ref, "skipped", 0.0, 0, "when was false", spec)
            return
        if spec.continue_on_error:
            self._ignoring += 1
        try:
            done = self._attempts(frame, spec, ref, step_type)
        finally:
            if spec.continue_on_error:
                self._ignoring -= 1
        if not done.halted:
            done = self.step_mode.after(ref, spec, done, lambda after: self._attempts(
                frame, spec, ref, step_type, after, by_user=True))
        failed = done.status == "failed"
        if failed and not done.halted and (spec.continue_on_error or self._ignoring):
            done.status = "ignored"
        self._finish(frame, ref, done.status, done.duration, done.attempts, done.message, spec,
                     done.runtime, done.assertions)
        if done.status == "error" or (failed and not spec.continue_on_error):
            frame.failed = True  # (an ancestor's continue_on_error decides at its own end)
        self._keep_up(spec, step_type, done)
        fatal = self.supervisor.fatal_now()
        if fatal is not None:
            raise Abort(status_of(fatal), fatal.line)
        if done.status == "error":
            raise Abort("error", done.message)

    def _keep_up(self, spec: StepSpec, step_type: StepType, done: Done) -> None:
        """Hand a passed background step's work to the run (after its end was reported, so a
        failure of that work is reported after it)."""
        if done.background is None or done.runtime is None:
            return
        if done.status != "passed":  # e.g. skipped in step mode after all: nothing keeps it
            done.background.stop()
            return
        self.backgrounds.add(done.runtime, done.background,
                             ignored=spec.continue_on_error or self._ignoring > 0,
                             uses_target=step_type.needs_target)

    def _when(self, frame: Frame, spec: StepSpec) -> bool:
        if spec.when is None or isinstance(spec.when, bool):
            return spec.when is not False
        return bool(self.renderer.evaluate(spec.when, frame.scope()))

    def _finish(self, frame: Frame, ref: StepRef, status: StepStatus, duration: float,
                attempts: int, message: str, spec: StepSpec | None = None,
                runtime: StepRuntime | None = None,
                assertions: tuple[AssertionResult, ...] = ()) -> None:
        with self._counts_lock:
            self.counts[status] = self.counts.get(status, 0) + 1
            self._finished.add(ref.seq)
        if runtime is not None:
            runtime.flush()
        if status == "skipped" and spec is not None:
            frame.register(spec, {"ok": True, "failed": False, "skipped": True,
                                         "message": message, "duration": 0.0, "attempts": 0})
        result = frame.results.get(ref.name, {})
        self.bus.emit(StepFinished(
            step=ref, status=status, duration=duration, attempts=attempts, message=message,
            output=runtime.captured() if runtime else "",
            result=_summarise(result), assertions=assertions,
            artifacts=tuple(str(p) for p in result.get("artifacts", ())
                            if isinstance(p, str | Path))))

    # -- the end ----------------------------------------------------------------------------

    def _background_failed(self, event: BackgroundFailed) -> None:
        """A background step's work (or the target) died: the step's count moves from
        passed to its new status, and every reporter hears of it."""
        if event.step.kind != "target":
            status = "ignored" if event.ignored else ("error" if event.environmental
                                                      else "failed")
            with self._counts_lock:
                if self.counts.get("passed"):
                    self.counts["passed"] -= 1
                self.counts[status] = self.counts.get(status, 0) + 1
        self.bus.emit(event)

    def _teardown(self) -> None:
        """Stop watching, stop background work (newest first), then close the target. When
        the target is lost, it is closed first: its streams end at once (the manager, if it
        still runs, removes the rules), so nothing waits for a manager that will not answer."""
        self.supervisor.close()
        if self.supervisor.target_loss is not None:
            self._close_session()
        self.backgrounds.stop_all(lambda runtime, exc: self.bus.emit(
            StepNote(runtime.ref, f"stopping background work failed: {exc}")))
        self._close_session()

    def _close_session(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            except Exception as exc:
                self.bus.emit(StepNote(TARGET, f"closing the target session failed: {exc}"))
            self._session = None

