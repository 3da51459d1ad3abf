"""Step mode (``--step``) in-process: what the terminal prompt says, what the question shows of
the step, what a skip or a quit does to the step, the steps after it and the exit code.

``test_step_mode`` drives the real command through a pseudo-terminal; these run the engine in
this process, so each answer's effect is checked exactly."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from kdiag.engine.events import StepRef
from kdiag.engine.interaction import TerminalInteraction

REF = StepRef(0, "probe api", "http", seq=1)


class Scripted:
    """Step mode's user, answering from lists; keeps what each question showed."""

    def __init__(self, before: list[str], after: list[str] | None = None) -> None:
        self.before = before
        self.after = after or []
        self.described: dict[str, str] = {}

    def before_step(self, step: StepRef, description: str) -> str:
        self.described[step.qualified_name] = description
        return self.before.pop(0)

    def after_failure(self, step: StepRef, message: str) -> str:
        return self.after.pop(0)

    def pause(self, step: StepRef, message: str) -> None:
        pass


def test_an_answer_it_does_not_know_is_asked_again_with_the_choices() -> None:
    out = io.StringIO()
    terminal = TerminalInteraction(io.StringIO("maybe\nn\n"), out)
    assert terminal.before_step(REF, "GET http://api") == "no"
    prompt = ("\n▶ probe api (http) — GET http://api\n"
              "  run it? [y]es / [n]o (skip) / [c]ontinue without asking / [q]uit: ")
    assert out.getvalue() == prompt + "  please answer y, n, c or q\n" + prompt


def test_a_failure_answer_it_does_not_know_is_asked_again() -> None:
    out = io.StringIO()
    terminal = TerminalInteraction(io.StringIO("later\nr\n"), out)
    assert terminal.after_failure(REF, "exit code 1") == "retry"
    prompt = "✗ probe api failed: exit code 1\n  [r]etry / [s]kip / [a]bort: "
    assert out.getvalue() == prompt + "  please answer r, s or a\n" + prompt


def test_continue_stops_the_questions_and_end_of_input_quits() -> None:
    out = io.StringIO()
    terminal = TerminalInteraction(io.StringIO("c\n"), out)
    assert terminal.before_step(REF, "") == "continue"
    asked = out.getvalue()
    assert "probe api (http)\n" in asked  # no description: no " — " part
    assert terminal.before_step(REF, "x") == "yes"
    assert out.getvalue() == asked  # not asked again
    assert TerminalInteraction(io.StringIO(""), io.StringIO()).before_step(REF, "") == "quit"
    assert TerminalInteraction(io.StringIO(""), io.StringIO()).after_failure(REF, "m") == "abort"


def test_the_question_shows_the_rendered_step_or_nothing_when_it_cannot_render(
        run_runbook: Callable[..., Any]) -> None:
    user = Scripted(["yes", "yes"], ["abort"])
    outcome = run_runbook("""
        params:
          who: {default: world}
        steps:
          - {name: greet, note: "hello {{ params.who }}"}
          - {name: broken, note: "{{ params.who.nope.deeper }}"}
    """, interaction=user)
    assert user.described == {"greet": "hello world", "broken": ""}
    assert outcome.exit_code == 1


def test_a_failed_step_skipped_by_the_user_is_skipped_and_the_run_passes(
        run_runbook: Callable[..., Any]) -> None:
    outcome = run_runbook("""
        steps:
          - {name: broken, run: {script: "exit 3"}}
          - {name: next, note: reached}
    """, interaction=Scripted(["yes", "yes"], ["skip"]))
    assert outcome.status == {"broken": "skipped", "next": "passed"}
    assert outcome.exit_code == 0


def test_quitting_reports_the_steps_left_as_not_run_and_runs_finally(
        run_runbook: Callable[..., Any]) -> None:
    user = Scripted(["yes", "quit"])
    outcome = run_runbook("""
        steps:
          - {name: first, note: one}
          - {name: second, note: two}
          - {name: third, note: three}
          - {name: fourth, note: four}
        finally:
          - {name: cleanup, note: bye}
    """, interaction=user)
    finished = outcome.recorder.finished()
    assert outcome.exit_code == 130
    assert finished["first"].status == "passed"
    assert [(finished[n].status, finished[n].message) for n in ("third", "fourth")] == \
        [("skipped", "not run: interrupted")] * 2
    assert finished["cleanup"].status == "passed"  # the finally step ran, without asking
    assert list(user.described) == ["first", "second"]
