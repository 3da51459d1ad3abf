"""Background work and the target are watched: a death ends the current step within seconds,
fails the run (3 for the environment, 1 for the work itself) unless ignored, and is reported;
the finally steps run. Real local processes are the background work here; the target is a
session whose lifeline the test fails."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from kdiag.engine.events import BackgroundFailed, RunFinished, StepFinished
from kdiag.lifeline import Lifeline
from kdiag.targets.base import TargetSession


def _failures(outcome) -> list[BackgroundFailed]:
    return [e for e in outcome.recorder.events if isinstance(e, BackgroundFailed)]


def _finished_at(outcome, name: str) -> float:
    """When (time.time()) a step finished: its start plus its duration."""
    event = outcome.recorder.finished()[name]
    starts = [e.started_at for e in outcome.recorder.events
              if type(e).__name__ == "StepStarted" and e.step == event.step]
    return starts[0] + event.duration


def test_lifeline_reports_once_also_to_late_listeners() -> None:
    lifeline = Lifeline()
    heard: list[str] = []
    forget = lifeline.listen(lambda loss: heard.append(f"a:{loss.cause}"))
    lifeline.listen(lambda loss: heard.append(f"b:{loss.cause}"))
    forget()
    assert lifeline.fail("first", environmental=False)
    assert not lifeline.fail("second")
    lifeline.listen(lambda loss: heard.append(f"late:{loss.cause}"))
    assert heard == ["b:first", "late:first"]
    assert lifeline.loss is not None and not lifeline.loss.environmental
    assert lifeline.wait(0) is lifeline.loss


def test_a_background_process_dying_ends_the_wait_and_fails_the_run(run_runbook,
                                                                     tmp_path: Path) -> None:
    died = tmp_path / "died"
    started = time.monotonic()
    outcome = run_runbook(f"""
        steps:
          - name: server
            run: {{script: "sleep 0.5; echo bye; date +%s.%N > {died}; exit 4"}}
            background: true
          - {{name: long wait, wait: 60s}}
          - {{name: never, note: x}}
        finally:
          - {{name: cleanup, run: {{argv: [echo, cleaned]}}, register: c}}
    """)
    assert time.monotonic() - started < 10
    assert outcome.exit_code == 1  # the work itself failed: a step failure, not the environment
    assert outcome.status == {"server": "passed", "long wait": "failed", "never": "skipped",
                              "cleanup": "passed"}
    wait = outcome.recorder.finished()["long wait"]
    assert wait.message == "stopped: run 'server': the background process exited with code 4"
    assert _finished_at(outcome, "long wait") - float(died.read_text()) < 2.0
    [failure] = _failures(outcome)
    assert (failure.step.name, failure.cause, failure.environmental, failure.ignored) == \
        ("server", "the background process exited with code 4", False, False)
    finished = outcome.recorder.events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.message == "run 'server': the background process exited with code 4"
    assert finished.counts == {"passed": 1, "failed": 2, "skipped": 1}


def test_continue_on_error_reports_the_death_as_ignored(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: flaky server
            run: {script: "sleep 0.2; kill -9 $$"}
            background: true
            continue_on_error: true
          - {name: short wait, wait: 1s}
          - {name: after, note: still runs}
    """)
    assert outcome.exit_code == 0
    assert outcome.status == {"flaky server": "passed", "short wait": "passed",
                              "after": "passed"}
    [failure] = _failures(outcome)
    assert failure.ignored and failure.cause == "the background process killed by SIGKILL"
    assert outcome.recorder.events[-1].counts == {"passed": 2, "ignored": 1}


def test_a_background_process_ending_well_is_only_noted(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: one-shot, run: {argv: ["true"]}, background: true}
          - {name: wait, wait: 0.5s}
    """)
    assert outcome.exit_code == 0
    assert not _failures(outcome)
    notes = [e.message for e in outcome.recorder.events if type(e).__name__ == "StepNote"]
    assert "the background process exited with code 0 before the run ended" in notes


def test_stopping_a_background_on_purpose_is_no_failure(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: server, run: {argv: [sleep, "30"]}, background: true}
          - {name: halt, stop: server}
          - {name: wait, wait: 0.3s}
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()
    assert not _failures(outcome)


def test_a_death_during_the_delay_between_retries_ends_the_step(run_runbook) -> None:
    started = time.monotonic()
    outcome = run_runbook("""
        steps:
          - {name: server, run: {script: "sleep 0.3; exit 2"}, background: true}
          - {name: poll, run: {argv: ["false"]}, retries: 5, delay: 30s}
    """)
    assert time.monotonic() - started < 5
    assert outcome.exit_code == 1
    assert outcome.recorder.finished()["poll"].message.startswith("stopped: run 'server'")


def test_a_death_under_a_group_stops_the_group_and_the_run(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: server, run: {script: "sleep 0.3; exit 2"}, background: true}
          - name: grp
            continue_on_error: true
            group:
              steps:
                - {name: inner wait, wait: 30s}
                - {name: inner never, note: x}
          - {name: never, note: x}
    """)
    assert outcome.exit_code == 1
    status = outcome.status
    assert status["grp / inner wait"] == "failed" and status["grp"] == "failed"
    assert status["grp / inner never"] == "skipped" and status["never"] == "skipped"


def test_finally_steps_are_not_cut_by_a_death(run_runbook, tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    outcome = run_runbook(f"""
        steps:
          - {{name: server, run: {{script: "sleep 0.2; exit 3"}}, background: true}}
        finally:
          - {{name: slow cleanup, run: {{script: "sleep 1; touch {marker}"}}}}
    """)
    assert outcome.exit_code == 1
    assert marker.exists()
    assert outcome.status["slow cleanup"] == "passed"


class _LosingSession(TargetSession):
    """A target session that is lost ``after`` seconds after it is watched."""

    def __init__(self, after: float) -> None:
        self.after = after
        self.info = {"kind": "fake"}
        self.closed = False
        self.manager = None  # type: ignore[assignment]

    def _start_watching(self, lifeline: Lifeline) -> None:
        timer = threading.Timer(self.after, lifeline.fail, args=("pod shop/api-7d9 deleted",))
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        self.closed = True


def test_a_lost_target_ends_the_run_with_exit_3_and_finally_fails_fast(run_runbook) -> None:
    session = _LosingSession(0.3)
    started = time.monotonic()
    outcome = run_runbook("""
        target: {node: {pid: 1}}
        steps:
          - {name: look, ps: {}, continue_on_error: true}
          - {name: long wait, wait: 60s}
        finally:
          - {name: inside, shell: {script: "echo hi"}}
          - {name: local cleanup, run: {argv: ["true"]}}
    """, open_target=lambda spec: session)
    assert time.monotonic() - started < 5
    assert outcome.exit_code == 3
    finished = outcome.recorder.finished()
    assert finished["long wait"].status == "error"
    assert finished["long wait"].message == "stopped: target: pod shop/api-7d9 deleted"
    assert finished["inside"].status == "error"
    assert finished["inside"].message == "the target is lost: pod shop/api-7d9 deleted"
    assert finished["local cleanup"].status == "passed"  # an error in finally skips no other
    assert outcome.recorder.events[-1].message == "target: pod shop/api-7d9 deleted"
    assert session.closed
    [failure] = _failures(outcome)
    assert failure.step.kind == "target" and failure.environmental


def test_an_environment_error_inside_a_group_is_exit_3_not_an_internal_error(run_runbook
                                                                              ) -> None:
    outcome = run_runbook("""
        steps:
          - name: grp
            group:
              steps:
                - {name: look, ps: {}}
          - {name: after, note: x}
    """)
    assert outcome.exit_code == 3
    grp = outcome.recorder.finished()["grp"]
    assert grp.status == "error" and "internal error" not in grp.message
    assert grp.message.startswith("this runbook has no target")


def test_every_step_end_is_reported_once(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: server, run: {script: "sleep 0.2; exit 2"}, background: true}
          - name: grp
            group:
              steps:
                - {name: inner, wait: 10s}
    """)
    names = [e.step.qualified_name for e in outcome.recorder.events
             if isinstance(e, StepFinished)]
    assert sorted(names) == sorted(set(names))


def test_a_broken_manager_stream_takes_the_targets_cause_when_it_follows() -> None:
    from kdiag.engine.events import StepRef
    from kdiag.engine.supervision import Supervisor

    seen: list[BackgroundFailed] = []
    supervisor = Supervisor(seen.append)
    target, redirect, server = Lifeline(), Lifeline(), Lifeline()
    supervisor.watch_target(target)
    supervisor.watch(StepRef(0, "api", "redirect"), redirect, ignored=False, uses_target=True)
    unwatch = supervisor.watch(StepRef(1, "srv", "run"), server, ignored=True,
                               uses_target=False)
    threading.Timer(0.2, target.fail, args=("manager gone (container k terminated: "
                                            "OOMKilled, exit code 137)",)).start()
    redirect.fail("the redirect's stream to the manager ended (UNAVAILABLE: Socket closed)")
    unwatch()
    server.fail("killed on purpose")  # stopped on purpose after unwatch: not reported
    assert {(f.step.name, f.cause) for f in seen} == {
        ("target", "manager gone (container k terminated: OOMKilled, exit code 137)"),
        ("api", "manager gone (container k terminated: OOMKilled, exit code 137)")}
    assert supervisor.fatal is not None and supervisor.fatal.environmental
