"""How the engine turns what a step raises into its outcome: a bug in a step type fails the
step with one line (``internal error: ...``), a refusal fails it with the step's result ``ok``
false, an environment problem stops the run even under ``continue_on_error``; a ``when`` that
cannot be evaluated fails the step without an attempt; the target is rendered with the params."""

from __future__ import annotations

from typing import Any

import pytest

from kdiag.errors import EnvironmentProblem, ManagerError
from kdiag.language.templating import TemplateError
from kdiag.steps.base import StepFailed
from kdiag.steps.note import NoteStep
from tests.unit.test_copy_step import session


@pytest.fixture
def raising(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """A ``note`` whose text is ``raise`` raises the next exception given."""
    queue: list[BaseException] = []
    real = NoteStep.execute

    def execute(self: NoteStep, body: Any, ctx: Any) -> Any:
        if body == "raise":
            raise queue.pop(0)
        return real(self, body, ctx)

    monkeypatch.setattr(NoteStep, "execute", execute)
    return queue


def notes(out: Any, step: str) -> list[str]:
    return [e.message for e in out.recorder.events
            if type(e).__name__ == "StepNote" and e.step.qualified_name == step]


def test_a_bug_in_a_step_type_fails_the_step_with_one_line(run_runbook, raising) -> None:
    raising.append(RuntimeError("boom"))
    out = run_runbook("steps:\n  - {name: buggy, note: raise}\n  - {name: after, note: x}\n")
    assert out.exit_code == 1
    assert out.status == {"buggy": "failed", "after": "skipped"}
    assert out.recorder.finished()["buggy"].message == "internal error: RuntimeError: boom"


def test_a_refusal_fails_the_step_and_its_result_says_not_ok(run_runbook, raising) -> None:
    raising.append(ManagerError("permission denied: /root"))
    out = run_runbook("""
steps:
  - {name: refused, note: raise, continue_on_error: true, register: r}
  - {name: told, note: "ok={{ r.ok }} failed={{ r.failed }}"}
""")
    assert out.exit_code == 0
    assert out.recorder.finished()["refused"].message == "permission denied: /root"
    assert notes(out, "told") == ["ok=False failed=True"]


@pytest.mark.parametrize("error", [StepFailed("no such file: /app.conf"),
                                   TemplateError("no such file: /app.conf")])
def test_a_step_that_fails_itself_registers_ok_false(run_runbook, raising,
                                                    error: Exception) -> None:
    raising.append(error)
    out = run_runbook("""
steps:
  - {name: failing, note: raise, continue_on_error: true, register: r}
  - {name: told, note: "ok={{ r.ok }} failed={{ r.failed }} {{ r.ok is sameas false }}"}
""")
    assert out.exit_code == 0
    assert out.recorder.finished()["failing"].message == "no such file: /app.conf"
    assert notes(out, "told") == ["ok=False failed=True True"]


def test_an_environment_problem_stops_the_run_despite_continue_on_error(run_runbook,
                                                                       raising) -> None:
    raising.append(EnvironmentProblem("manager unreachable: socket closed"))
    out = run_runbook("""
steps:
  - {name: lost, note: raise, continue_on_error: true}
  - {name: after, note: x}
""")
    assert out.exit_code == 3
    assert out.status == {"lost": "error", "after": "skipped"}


def test_a_when_that_cannot_be_evaluated_fails_without_an_attempt(run_runbook) -> None:
    out = run_runbook("steps:\n  - {name: guarded, note: x, when: \"1 // 0 == 1\"}\n")
    assert out.exit_code == 1
    finished = out.recorder.finished()["guarded"]
    assert (finished.status, finished.attempts) == ("failed", 0)
    assert finished.message.startswith("when: ")


def test_the_target_is_rendered_with_the_params(run_runbook) -> None:
    specs: list[Any] = []

    def open_target(spec: Any) -> Any:
        specs.append(spec)
        return session(None)  # type: ignore[arg-type]

    out = run_runbook("""
params:
  pid: {type: integer, default: 1}
target: {node: {pid: "{{ params.pid }}"}}
steps:
  - {name: look, shell: {argv: ["true"]}, continue_on_error: true}
""", sets={"pid": "4242"}, open_target=open_target)
    assert specs == [{"node": {"pid": 4242}}], out.status


def test_until_without_retries_tries_three_more_times(run_runbook) -> None:
    """(README: "default retries with until: 3".)"""
    out = run_runbook("steps:\n  - {name: poll, note: x, until: \"1 == 2\", delay: 0s}\n")
    assert out.exit_code == 1
    assert out.recorder.finished()["poll"].attempts == 4
    out = run_runbook("steps:\n  - {name: counted, note: x, until: \"1 == 2\", delay: 0s, "
                      "retries: 1}\n")
    assert out.recorder.finished()["counted"].attempts == 2


def test_a_skipped_step_finishes_with_no_output(run_runbook) -> None:
    out = run_runbook("steps:\n  - {name: never, note: x, when: 'false'}\n")
    assert out.status == {"never": "skipped"}
    finished = out.recorder.finished()["never"]
    assert (finished.output, finished.message) == ("", "when was false")
