"""Step mode (``--step``) in the run: ask before each step, and after a failed one."""

from __future__ import annotations

from collections.abc import Callable

from kdiag.engine.attempts import Done
from kdiag.engine.events import StepRef
from kdiag.engine.frame import Frame
from kdiag.engine.interaction import Interaction
from kdiag.language.model import StepSpec
from kdiag.language.templating import Renderer, TemplateError
from kdiag.steps.base import StepType


class StepMode:
    """Asks through ``interaction`` (None: not in step mode, nothing is asked)."""

    def __init__(self, interaction: Interaction | None, renderer: Renderer) -> None:
        self.interaction = interaction
        self.renderer = renderer
        self.quit = False
        """The user quit: the finally steps then run without asking."""

    def before(self, ref: StepRef, step_type: StepType, spec: StepSpec, frame: Frame) -> bool:
        """Run the step? (KeyboardInterrupt: the user quit.)"""
        if self.interaction is None or self.quit:
            return True
        choice = self.interaction.before_step(ref, self._describe(step_type, spec, frame))
        if choice == "quit":
            self.quit = True  # the finally steps then run without asking
            raise KeyboardInterrupt
        return choice != "no"

    def after(self, ref: StepRef, spec: StepSpec, done: Done,
              retry: Callable[[int], Done]) -> Done:
        """After a failed step: retry it (as often as asked), skip it, or let it fail.

        ``retry(n)`` runs the step's attempts again, numbered on after the ``n`` it had: every
        attempt is reported (``AttemptFinished``), and the step's attempts and duration are the
        totals (the time the user took to answer is not counted)."""
        while done.status == "failed" and self.interaction is not None \
                and not spec.continue_on_error:
            choice = self.interaction.after_failure(ref, done.message)
            if choice == "retry":
                before = done
                done = retry(before.attempts)
                done.duration += before.duration
                continue
            if choice == "skip":
                done.status = "skipped"
                done.message = f"failed, then skipped by the user: {done.message}"
            break
        return done

    def _describe(self, step_type: StepType, spec: StepSpec, frame: Frame) -> str:
        try:
            body = spec.body if step_type.raw_body else self.renderer.render(
                spec.body, frame.scope(), step_type.expression_fields)
            return step_type.describe(body)
        except (TemplateError, TypeError, KeyError, AttributeError):
            return ""
