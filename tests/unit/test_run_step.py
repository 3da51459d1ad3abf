"""The ``run`` step's own process: both of its streams reach the step's output and its result,
and ``inherit_env: false`` keeps this machine's environment out of a command that takes the
target's (``from_target``), against a stand-in manager."""

from __future__ import annotations

from typing import Any

from kdiag.engine.events import StepOutput
from tests.unit.test_copy_step import session


def test_stdout_and_stderr_each_reach_the_output_and_the_result(run_runbook: Any) -> None:
    out = run_runbook("""
        steps:
          - name: talk
            run: {script: "echo to-out; echo to-err >&2"}
            register: r
          - {name: told, assert: ["r.stdout == 'to-out\\n'", "r.stderr == 'to-err\\n'"]}
    """)
    assert out.exit_code == 0, out.recorder.finished()["told"].message
    streams = {(e.stream, e.text) for e in out.recorder.events
               if isinstance(e, StepOutput) and e.text}
    assert streams == {("stdout", "to-out\n"), ("stderr", "to-err\n")}


class Manager:
    def environ(self) -> list[tuple[str, str]]:
        return [("APP_MODE", "blue")]


def _env_seen(run_runbook: Any, inherit: str) -> str:
    out = run_runbook(f"""
        target: {{node: {{pid: 1}}}}
        steps:
          - name: env
            run:
              argv: [sh, -c, 'echo "home=${{HOME-unset}} mode=$APP_MODE"']
              from_target: {{env: true}}
              inherit_env: {inherit}
    """, open_target=lambda spec: session(Manager()))  # type: ignore[arg-type]
    assert out.exit_code == 0, out.recorder.finished()["env"].message
    return str(out.recorder.output("env"))


def test_with_the_targets_environment_inherit_env_false_leaves_this_machines_out(
        run_runbook: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("HOME", "/home/operator")
    assert _env_seen(run_runbook, "false") == "home=unset mode=***\n"  # (the target's value, masked)
    assert _env_seen(run_runbook, "true") == "home=/home/operator mode=***\n"
