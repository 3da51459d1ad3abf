"""Every attempt of a step is in the reports (issue 11): automatic retries (``retries``/
``until``) and retries asked for in ``--step`` mode, each with its outcome and message; JUnit
and Markdown say that a step passed after N failed attempts."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from kdiag.engine.events import AttemptFinished
from tests.unit.test_step_mode import Terminal

COUNTING = "n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; "


def test_automatic_retries_each_end_with_an_event(run_runbook, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    outcome = run_runbook(f"""
        steps:
          - name: count
            run: {{script: "{COUNTING.format(counter=counter)}echo $n"}}
            register: c
            retries: 5
            delay: 10ms
            until: c.stdout | int >= 3
    """)
    assert outcome.exit_code == 0
    attempts = [e for e in outcome.recorder.events if isinstance(e, AttemptFinished)]
    assert [(a.attempt, a.status, a.by_user) for a in attempts] == [
        (1, "failed", False), (2, "failed", False), (3, "passed", False)]
    assert attempts[0].message == "until 'c.stdout | int >= 3' was still false"
    assert all(a.duration >= 0 for a in attempts)


def test_a_step_whose_attempts_all_fail_lists_them(run_runbook) -> None:
    outcome = run_runbook("""
        steps:
          - {name: nope, run: {script: "exit 3"}, retries: 1, delay: 10ms}
    """)
    assert outcome.exit_code == 1
    attempts = [e for e in outcome.recorder.events if isinstance(e, AttemptFinished)]
    assert [(a.attempt, a.status) for a in attempts] == [(1, "failed"), (2, "failed")]
    assert outcome.recorder.finished()["nope"].attempts == 2


def _reports(tmp_path: Path) -> tuple[list[str], dict[str, Path]]:
    paths = {kind: tmp_path / f"report.{kind}" for kind in ("json", "junit", "md")}
    return [flag for kind, path in paths.items() for flag in ("--report", f"{kind}={path}")], paths


def test_a_step_retried_by_the_user_in_step_mode_shows_every_attempt(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent(f"""
        steps:
          - name: flaky
            run: {{script: "{COUNTING.format(counter=counter)}echo try $n; test $n -ge 2"}}
          - {{name: after, note: done}}
    """))
    flags, reports = _reports(tmp_path)
    term = Terminal(str(path), "--step", *flags)
    term.expect("[q]uit: ")
    term.send("c")
    term.expect("[r]etry / [s]kip / [a]bort: ")
    term.send("r")
    assert term.finish() == 0

    step = json.loads(reports["json"].read_text())["runs"][0]["steps"][0]
    assert step["status"] == "passed" and step["attempts"] == 2
    assert [(a["attempt"], a["status"], a["by_user"]) for a in step["attempt_log"]] == [
        (1, "failed", False), (2, "passed", True)]
    assert step["attempt_log"][0]["message"] == "exit code 1"

    case = ET.parse(reports["junit"]).getroot().find("testsuite/testcase")
    assert case is not None and case.find("failure") is None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props == {"attempts": "2", "failed_attempts": "1"}
    flaky = case.findall("flakyFailure")
    assert len(flaky) == 1 and flaky[0].get("type") == "failed"
    assert (case.findtext("system-out") or "").startswith(
        "passed on attempt 2 after 1 failed attempt:\n  attempt 1: failed")

    markdown = reports["md"].read_text()
    assert "| 2 (1 failed) |" in markdown
    assert "## Passed after failed attempts" in markdown
    assert "attempt 2 (retried by the user): passed" in markdown


def test_a_failed_step_report_lists_its_attempts(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text("steps:\n  - {name: nope, run: {script: 'echo out; exit 3'}, retries: 2, "
                    "delay: 10ms}\n")
    flags, reports = _reports(tmp_path)
    from tests.unit.test_cli import kdiag

    assert kdiag("run", str(path), *flags).returncode == 1
    step = json.loads(reports["json"].read_text())["runs"][0]["steps"][0]
    assert [a["status"] for a in step["attempt_log"]] == ["failed"] * 3
    failure = ET.parse(reports["junit"]).getroot().findtext("testsuite/testcase/failure") or ""
    assert "Attempts:\n  attempt 1: failed" in failure and "  attempt 3: failed" in failure
    assert "**Attempts:**" in reports["md"].read_text()
