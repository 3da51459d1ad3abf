"""Engine, language and report behaviour that mutation testing found unchecked (each test names
what it holds): the `run` scope, `--start-at` with finally steps, an included runbook's `env`,
step mode's skip after a failure, the template limits of `zfill` and `expandtabs`, trailing
newlines, and the JUnit and JSON reports' counts and fields."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kdiag.cli.main import main
from kdiag.engine.runner import RunOptions
from kdiag.language.templating import Renderer


def test_a_registered_note_holds_its_message(run_runbook) -> None:
    """README: a note's result is its ``message`` (the common fields must not blank it)."""
    outcome = run_runbook("""
        steps:
          - {name: said, note: "hello {{ 6 * 7 }}", register: n}
          - {name: check, assert: ["n.message == 'hello 42'", "n.ok"]}
    """)
    assert outcome.status == {"said": "passed", "check": "passed"}


def test_the_run_scope_names_the_run(run_runbook, write) -> None:
    outcome = run_runbook("""
        name: scoped
        steps:
          - name: say
            note: "{{ run.id }}|{{ run.runbook }}|{{ run.file }}"
    """)
    assert outcome.exit_code == 0, outcome.status
    run_id, name, file = outcome.recorder.finished()["say"].result["message"].split("|")
    assert name == "scoped" and file.endswith("runbook.yaml") and Path(file).is_absolute()
    assert run_id and run_id not in (name, file)


def test_start_at_skips_earlier_steps_but_never_the_finally_ones(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: a, note: x}
          - {name: b, note: y}
        finally:
          - {name: cleanup, note: z}
    """, options=RunOptions(start_at="b"))
    assert outcome.exit_code == 0
    assert outcome.status == {"a": "skipped", "b": "passed", "cleanup": "passed"}
    assert outcome.recorder.finished()["a"].message == "before --start-at"


def test_an_included_runbook_sees_the_callers_environment(
        run_runbook, write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_TEST_CALLER", "from-the-caller")
    write("""
        env: [KDIAG_TEST_CALLER]
        steps:
          - {name: inner, note: "{{ env.KDIAG_TEST_CALLER }}", register: said}
        outputs:
          said: "{{ said.message }}"
    """, name="child.yaml")
    outcome = run_runbook("""
        env: [KDIAG_TEST_CALLER]
        steps:
          - name: call
            include: {file: child.yaml}
            register: child
            assert: ["child.outputs.said == 'from-the-caller'"]
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()["call"].message


class _SkipFailures:
    """Step mode's user: yes to every step, skip after a failure."""

    def before_step(self, step, description: str) -> str:
        return "yes"

    def after_failure(self, step, message: str) -> str:
        return "skip"

    def pause(self, step, message: str) -> None:
        pass


def test_a_failure_skipped_by_the_user_says_so_and_the_run_goes_on(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: broken, run: {script: "exit 4"}}
          - {name: next, note: reached}
    """, interaction=_SkipFailures())
    finished = outcome.recorder.finished()
    assert finished["broken"].message == "failed, then skipped by the user: exit code 4"
    assert finished["next"].status == "passed"


@pytest.mark.parametrize("template", ["'a'.zfill(10**8)", "'a'.rjust(10**8)",
                                      "('\\t' * 100).expandtabs(100000)"])
def test_text_methods_that_would_build_too_much_are_refused(run_runbook, template: str) -> None:
    outcome = run_runbook(f"""
        steps:
          - {{name: big, note: "{{{{ {template} }}}}"}}
    """)
    assert outcome.status == {"big": "failed"}
    assert "would be larger than 4 MiB" in outcome.recorder.finished()["big"].message


def test_a_template_keeps_its_trailing_newline() -> None:
    assert Renderer().render("x{{ 'a' }}\n", {}) == "xa\n"


def test_junit_and_json_count_every_step_and_carry_the_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text("steps:\n  - {name: fails, assert: ['1 == 2']}\n  - {name: s1, note: x}\n"
                    "  - {name: s2, note: y}\n")
    junit, report = tmp_path / "r.xml", tmp_path / "r.json"
    assert main(["run", str(path), "-q", "--report", f"junit={junit}", "--report",
                 f"json={report}", "--artifacts", str(tmp_path / "art")]) == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "2")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["exit_code"] == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and "Output: (none)" in (failure.text or "")
    steps = json.loads(report.read_text())["runs"][0]["steps"]
    assert [s["number"] for s in steps] == [1, 2, 3]


def test_a_retried_step_carries_its_attempts_in_junit(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    counter = tmp_path / "n"
    path.write_text(f"""steps:
  - name: flaky
    run: {{script: "echo x >> {counter}; test $(wc -l < {counter}) -ge 2"}}
    retries: 2
    delay: 0
""")
    junit = tmp_path / "r.xml"
    assert main(["run", str(path), "-q", "--report", f"junit={junit}", "--artifacts",
                 str(tmp_path / "art")]) == 0
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert (props["attempts"], props["failed_attempts"]) == ("2", "1")
    assert len(case.findall("flakyFailure")) == 1
    assert os.path.exists(counter)
