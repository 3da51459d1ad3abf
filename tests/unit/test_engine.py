"""Engine semantics: each per-step control, finally, background, include, masking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from kdiag.engine.events import AssertionResult, RunFinished, RunStarted, StepNote
from kdiag.engine.runner import RunOptions


def test_passing_run_exits_0_and_registers_results(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: hello
            run: {argv: [echo, hi]}
            register: hello
          - name: check
            assert: ["hello.stdout == 'hi\\n'", "hello.rc == 0", "steps['hello'].ok"]
    """)
    assert outcome.exit_code == 0
    assert outcome.status == {"hello": "passed", "check": "passed"}


def test_when_skips_and_registers_skipped(run_runbook) -> None:
    outcome = run_runbook("""
        params:
          enabled: {type: boolean, default: false}
        steps:
          - {name: maybe, note: x, when: params.enabled, register: maybe}
          - {name: always, note: y, when: not params.enabled}
          - {name: check, assert: [maybe.skipped]}
    """)
    assert outcome.exit_code == 0
    assert outcome.status == {"maybe": "skipped", "always": "passed", "check": "passed"}


def test_retries_until(run_runbook, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    outcome = run_runbook(f"""
        steps:
          - name: count
            run:
              script: n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; echo $n
            register: c
            retries: 5
            delay: 10ms
            until: c.stdout | int >= 3
    """)
    assert outcome.exit_code == 0
    assert outcome.recorder.finished()["count"].attempts == 3
    assert counter.read_text() == "3\n"


def test_retries_exhausted_fails_with_reason(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: never, run: {argv: ["false"]}, retries: 2, delay: 0}
    """)
    finished = outcome.recorder.finished()["never"]
    assert outcome.exit_code == 1
    assert finished.attempts == 3
    assert finished.message == "exit code 1"


def test_timeout_kills_the_whole_process_group(run_runbook, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    outcome = run_runbook(f"""
        steps:
          - name: slow
            run: {{script: "sleep 30 & echo $! > {pidfile}; wait"}}
            timeout: 300ms
    """)
    assert time.monotonic() - started < 10
    assert outcome.exit_code == 1
    assert outcome.recorder.finished()["slow"].message == "timed out after 0.3s"
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert _gone(child)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie left for an absent reaper counts as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_failure_stops_the_run_and_finally_still_runs(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: ok, note: fine}
          - {name: bad, run: {argv: ["false"]}}
          - {name: never, note: unreachable}
        finally:
          - {name: cleanup, run: {argv: [echo, cleaned]}, register: c}
          - {name: cleanup checks, assert: ["c.stdout == 'cleaned\\n'"]}
    """)
    assert outcome.exit_code == 1
    assert outcome.status == {"ok": "passed", "bad": "failed", "never": "skipped",
                              "cleanup": "passed", "cleanup checks": "passed"}
    assert outcome.recorder.finished()["never"].message == "not run: an earlier step failed"


def test_continue_on_error_is_ignored_not_failed(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: flaky, run: {argv: ["false"]}, continue_on_error: true, register: f}
          - {name: after, assert: ["f.failed", "f.rc == 1"]}
    """)
    assert outcome.exit_code == 0
    assert outcome.status == {"flaky": "ignored", "after": "passed"}


def test_failed_assertion_shows_expression_values_and_output(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: call
            run: {script: "echo status=404"}
            register: resp
            assert:
              - "'status=200' in resp.stdout"
              - resp.rc == 0
    """)
    finished = outcome.recorder.finished()["call"]
    assert outcome.exit_code == 1
    assert finished.message == "assertion failed: 'status=200' in resp.stdout"
    failed = [a for a in finished.assertions if not a.passed]
    assert len(failed) == 1
    assert failed[0].values == {"resp.stdout": '"status=404\\n"'}
    assert "status=404" in finished.output


def test_runtime_template_error_fails_the_step_not_the_engine(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: obj, run: {argv: [echo, "{}"]}, register: r}
          - {name: use, note: "{{ r.nothing_here }}"}
    """)
    assert outcome.exit_code == 1
    assert "nothing_here" in outcome.recorder.finished()["use"].message


def test_rendered_values_are_checked_against_the_schema(run_runbook) -> None:
    outcome = run_runbook("""
        params:
          code: {type: string, default: abc}
        steps:
          - {name: bad, http: {url: "http://127.0.0.1:9/", expect_status: "{{ params.code }}"}}
    """)
    assert outcome.exit_code == 1
    assert "after rendering" in outcome.recorder.finished()["bad"].message


def test_background_stays_up_until_the_run_ends(run_runbook, tmp_path: Path) -> None:
    marker = tmp_path / "bg"
    outcome = run_runbook(f"""
        steps:
          - name: server
            run: {{script: "echo $$ > {marker}; echo started; exec sleep 30"}}
            background: true
            register: server
          - name: still up
            wait: {{until: "server.pid > 0", timeout: 2s, interval: 50ms}}
          - name: check
            run: {{script: "kill -0 $(cat {marker})"}}
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()
    assert _gone(int(marker.read_text()))
    assert "started" in outcome.recorder.output("server")


def test_include_with_params_returns_outputs(run_runbook, write) -> None:
    write("""
        params:
          x: {type: integer}
          token: {type: string, default: hunter2-secret, secret: true}
        steps:
          - {name: double, run: {script: "echo {{ params.x * 2 }} {{ params.token }}"}, register: d}
        outputs:
          doubled: "{{ (d.stdout.split() | first) | int }}"
    """, "lib/double.yaml")
    outcome = run_runbook("""
        steps:
          - {name: inc, include: {file: lib/double.yaml, params: {x: 21}}, register: inc}
          - {name: check, assert: ["inc.outputs.doubled == 42", "inc.steps.double.rc == 0"]}
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()
    assert outcome.status == {"inc / double": "passed", "inc": "passed", "check": "passed"}
    assert "hunter2-secret" not in outcome.recorder.output("inc / double")
    assert "***" in outcome.recorder.output("inc / double")


def test_failure_inside_include_fails_the_include(run_runbook, write) -> None:
    write("steps:\n  - {name: boom, run: {argv: ['false']}}\n", "lib/bad.yaml")
    outcome = run_runbook("""
        steps:
          - {name: inc, include: {file: lib/bad.yaml}}
          - {name: after, note: x}
    """)
    assert outcome.exit_code == 1
    assert outcome.status == {"inc / boom": "failed", "inc": "failed", "after": "skipped"}


def test_secrets_are_masked_in_every_event(run_runbook) -> None:
    secret = "pa55-w0rd-xyz"
    outcome = run_runbook("""
        params:
          password: {type: string, secret: true}
        steps:
          - name: leak
            run: {script: "echo {{ params.password }}; echo {{ params.password }} >&2"}
            register: leak
            assert: ["leak.stdout == 'nope'"]
          - name: note
            note: "the password is {{ params.password }}"
    """, sets={"password": secret})
    assert outcome.exit_code == 1
    text = repr(outcome.recorder.events)
    assert secret not in text
    assert "***" in text
    started = next(e for e in outcome.recorder.events if isinstance(e, RunStarted))
    assert started.params == {"password": "***"}
    failed = next(e for e in outcome.recorder.events if isinstance(e, AssertionResult))
    assert failed.values == {"leak.stdout": '"***\\n"'}


def test_start_at_skips_earlier_steps(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: one, note: a}
          - {name: two, note: b}
          - {name: three, note: c}
        finally:
          - {name: fin, note: d}
    """, options=RunOptions(start_at="two"))
    assert outcome.status == {"one": "skipped", "two": "passed", "three": "passed", "fin": "passed"}


def test_wait_until_times_out_with_reason(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: w, wait: {until: "false", interval: 10ms, timeout: 50ms}}
    """)
    assert outcome.exit_code == 1
    assert "was still false after 0.05s" in outcome.recorder.finished()["w"].message


def test_pause_is_noted_when_not_interactive(run_runbook) -> None:
    outcome = run_runbook("steps:\n  - {name: p, pause: look at the logs}\n")
    assert outcome.exit_code == 0
    notes = [e.message for e in outcome.recorder.events if isinstance(e, StepNote)]
    assert notes == ["pause skipped (not interactive): look at the logs"]


def test_run_finished_counts(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: a, note: x}
          - {name: b, note: y, when: false}
    """)
    finished = outcome.recorder.events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.counts == {"passed": 1, "skipped": 1}
    assert finished.exit_code == 0


def _start_cli(runbook: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kdiag", "run", str(runbook), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})


def _wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_sigint_runs_finally_and_exits_130(tmp_path: Path) -> None:
    started, cleaned = tmp_path / "started", tmp_path / "cleaned"
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent(f"""
        steps:
          - name: long
            run: {{script: "touch {started}; sleep 30"}}
          - {{name: never, note: x}}
        finally:
          - name: cleanup
            run: {{script: "touch {cleaned}"}}
    """))
    report = tmp_path / "report.json"
    process = _start_cli(runbook, "--report", f"json={report}")
    _wait_for(started)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130, (out, err)
    assert cleaned.exists()
    assert "Traceback" not in err
    steps = {s["name"]: s for s in json.loads(report.read_text())["runs"][0]["steps"]}
    assert (steps["long"]["status"], steps["long"]["message"]) == ("failed", "interrupted")
    assert steps["never"]["status"] == "skipped"
    assert steps["cleanup"]["status"] == "passed"


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    started, cleaned = tmp_path / "started", tmp_path / "cleaned"
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(textwrap.dedent(f"""
        steps:
          - {{name: long, run: {{script: "touch {started}; sleep 30"}}}}
        finally:
          - {{name: cleanup, run: {{script: "touch {cleaned}"}}}}
    """))
    process = _start_cli(runbook, "--quiet")
    _wait_for(started)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    assert process.returncode == 130
    assert cleaned.exists()


def test_a_secret_split_across_output_chunks_is_still_masked() -> None:
    from kdiag.engine.masking import Masker

    masker = Masker(["s3cr3t-token"])
    emitted, held = masker.split("value: s3cr")
    assert (emitted, held) == ("value: ", "s3cr")
    emitted, held = masker.split(held + "3t-token and more")
    assert (emitted, held) == ("*** and more", "")
    assert masker.split("no secret here s") == ("no secret here ", "s")


def test_chunked_step_output_never_shows_a_secret(run_runbook) -> None:
    secret = "abcdef123456"
    outcome = run_runbook(r"""
        params:
          token: {type: string, secret: true}
        steps:
          - name: dribble
            run: {script: "printf 'x{{ params.token[:5] }}'; sleep 0.1; printf '{{ params.token[5:] }}y'"}
    """, sets={"token": secret})
    output = outcome.recorder.output("dribble")
    assert output == "x***y"
    assert secret[:5] not in repr(outcome.recorder.events)


def test_group_runs_nested_steps_named_under_it(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: outer
            group:
              steps:
                - {name: a, run: {argv: [echo, one]}, register: a}
                - {name: b, assert: ["a.stdout == 'one\\n'"]}
          - {name: after, assert: ["a.rc == 0"]}
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()
    assert outcome.status == {"outer / a": "passed", "outer / b": "passed", "outer": "passed",
                              "after": "passed"}


def test_group_failure_with_continue_on_error(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: optional checks
            continue_on_error: true
            group:
              steps:
                - {name: bad, run: {argv: ["false"]}}
                - {name: skipped, note: x}
          - {name: after, note: y}
    """)
    assert outcome.exit_code == 0
    # The nested failure is ignored as well: no report counts a failure in a passing run.
    assert outcome.status == {"optional checks / bad": "ignored",
                              "optional checks / skipped": "skipped",
                              "optional checks": "ignored", "after": "passed"}


def test_group_failure_without_continue_on_error(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: checks
            group:
              steps:
                - {name: bad, run: {argv: ["false"]}}
                - {name: skipped, note: x}
          - {name: after, note: y}
    """)
    assert outcome.exit_code == 1
    assert outcome.status == {"checks / bad": "failed", "checks / skipped": "skipped",
                              "checks": "failed", "after": "skipped"}


def test_stop_ends_a_background_step_early(run_runbook, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    outcome = run_runbook(f"""
        steps:
          - name: server
            run: {{script: "echo $$ > {marker}; exec sleep 30"}}
            background: true
          - {{name: up, wait: {{until: "steps.server.ok", timeout: 1s}}}}
          - {{name: halt, stop: server}}
          - {{name: gone, run: {{script: "! kill -0 $(cat {marker})"}}}}
          - {{name: again, stop: server, continue_on_error: true}}
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()
    assert outcome.recorder.finished()["again"].message == "no background step named 'server' is running"


def test_manager_lost_mid_run_is_an_environment_error_and_finally_runs(run_runbook) -> None:
    from kdiag.errors import ManagerUnavailable
    from kdiag.targets.base import TargetSession

    class Manager:
        def ps(self, all_processes: bool = False) -> list:
            raise ManagerUnavailable("manager unreachable (UNAVAILABLE): ps: socket closed")

    class Session(TargetSession):
        manager = Manager()  # type: ignore[assignment]
        info = {"kind": "fake"}
        closed = False

        def close(self) -> None:
            Session.closed = True

    outcome = run_runbook("""
        target: {node: {pid: 1}}
        steps:
          - {name: look, ps: {}}
          - {name: never, note: x}
        finally:
          - {name: cleanup, note: still runs}
    """, open_target=lambda spec: Session())
    assert outcome.exit_code == 3
    assert outcome.status == {"look": "error", "never": "skipped", "cleanup": "passed"}
    assert "manager unreachable" in outcome.recorder.finished()["look"].message
    assert Session.closed
    notes = [e.message for e in outcome.recorder.events if type(e).__name__ == "StepNote"]
    assert notes[:2] == ["opening the target: node (pid=1)", "target: fake"]


def test_retry_waits_the_delay_between_attempts(run_runbook, tmp_path: Path) -> None:
    """`delay` is the pause between attempts (2 s here, not the 1 s default)."""
    stamps = tmp_path / "stamps"
    outcome = run_runbook(f"""
        steps:
          - {{name: twice, run: {{script: 'date +%s.%N >> {stamps}; false'}}, retries: 1,
             delay: 2s}}
    """)
    assert outcome.exit_code == 1
    first, second = (float(x) for x in stamps.read_text().split())
    assert second - first >= 1.95


def test_a_passed_step_reports_the_assertions_that_held(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - name: call
            run: {script: "echo status=200"}
            register: resp
            assert: ["'status=200' in resp.stdout", resp.rc == 0]
    """)
    finished = outcome.recorder.finished()["call"]
    assert outcome.exit_code == 0
    assert [(a.expression, a.passed) for a in finished.assertions] == [
        ("'status=200' in resp.stdout", True), ("resp.rc == 0", True)]


def test_what_opening_the_target_found_is_in_the_templates_of_later_steps(run_runbook) -> None:
    """The session's ``info`` (e.g. the pod a Deployment resolved to) joins ``target``."""
    from kdiag.targets.base import TargetSession

    class Manager:
        def ps(self, all_processes: bool = False) -> list:
            return []

    class Session(TargetSession):
        manager = Manager()  # type: ignore[assignment]
        info = {"kind": "fake", "pod": "api-7f9c-x2"}

        def close(self) -> None:
            pass

    outcome = run_runbook("""
        target: {node: {pid: 1}}
        steps:
          - {name: before, note: "kind={{ target.kind }} pid={{ target.pid }}"}
          - {name: look, ps: {}}
          - {name: after, note: "kind={{ target.kind }} pod={{ target.pod }} pid={{ target.pid }}"}
    """, open_target=lambda spec: Session())
    assert outcome.exit_code == 0, outcome.recorder.finished()
    notes = {e.step.name: e.message for e in outcome.recorder.events if isinstance(e, StepNote)
             and e.step.name in ("before", "after")}
    assert notes == {"before": "kind=node pid=1", "after": "kind=fake pod=api-7f9c-x2 pid=1"}
