"""Reporters: the run record, JSON, JUnit, markdown and artifacts output, and make_reporters.

Event sequences are built by hand; every reporter is fed the same ones. The console reporter is
checked in plain, line and live modes.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from kdiag.engine.artifacts import slug, step_folder_name
from kdiag.engine.events import (
    AssertionResult,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    StepNote,
    StepOutput,
    StepRef,
    StepStarted,
)
from kdiag.errors import EnvironmentProblem, UsageError
from kdiag.reports import close_all, make_reporters, parse_report_spec
from kdiag.reports.artifacts import ArtifactsReporter
from kdiag.reports.console import ConsoleReporter
from kdiag.reports.json_report import JsonReporter
from kdiag.reports.junit import JunitReporter
from kdiag.reports.markdown import MarkdownReporter, code, fence
from kdiag.reports.record import RunLog, RunRecord
from kdiag.reports.text import xml_safe

T0 = 1_700_000_000.0
SECRET = "s3cr3t-Passw0rd"  # never in any event: reporters must not make it appear
NASTY = "<b>&amp; \"q\" 'a' \x1b[31mred\x1b[0m \x00\x07\x1f ünïcödé ✓ 😀 ]]> --"

DEPLOY = StepRef(0, "deploy", "shell", seq=1)
CHECK = StepRef(1, "check health", "http", seq=2)
FLAKY = StepRef(2, "flaky", "shell", seq=4)
OPTIONAL = StepRef(3, "optional", "shell", seq=5)
PROBE = StepRef(0, "probe", "tcp", path=("lib/check",), seq=3)
CLEANUP = StepRef(0, "cleanup", "shell", phase="finally", seq=6)
TARGET = StepRef(0, "target", "target")  # the engine's teardown notes are about no step

CHECK_OUTPUT = "".join(f"line {i}\n" for i in range(1, 121)) + NASTY + "\n"


def run_started(step_count: int = 2) -> RunStarted:
    return RunStarted(
        runbook="redirect-api",
        file="runbooks/redirect-api.yaml",
        params={"namespace": "staging", "token": "***", "port": 8080, "selector": "a|b"},
        target="pod/staging/api-0",
        step_count=step_count,
        started_at=T0,
    )


def passed_run() -> list[Event]:
    return [
        run_started(),
        StepStarted(DEPLOY, 1, T0, description="deploy the build"),
        StepOutput(DEPLOY, "stdout", "hello\n"),
        StepFinished(DEPLOY, "passed", 0.12, 1, output="hello\n", result={"rc": 0}),
        StepStarted(CHECK, 1, T0 + 1),
        AssertionResult(CHECK, "result.status == 200", True, {"result.status": "200"}),
        StepFinished(
            CHECK,
            "passed",
            0.3,
            1,
            assertions=(AssertionResult(CHECK, "result.status == 200", True, {"result.status": "200"}),),
        ),
        RunFinished("passed", 0, 0.5, {"passed": 2}),
    ]


def failed_run() -> list[Event]:
    failed = AssertionResult(
        CHECK,
        "result.status == 200",
        False,
        {"result.status": "503", "token": "***"},
        "status was 503",
    )
    held = AssertionResult(CHECK, "result.elapsed < 2", True, {"result.elapsed": "0.4"})
    return [
        run_started(6),
        StepStarted(DEPLOY, 1, T0),
        StepNote(DEPLOY, "paused: inspect the pod now"),
        StepFinished(DEPLOY, "passed", 0.12, 1, output="deployed\n"),
        StepStarted(CHECK, 1, T0 + 1),
        StepOutput(CHECK, "stdout", CHECK_OUTPUT[:50]),
        StepOutput(CHECK, "stdout", CHECK_OUTPUT[50:]),
        failed,
        held,
        StepStarted(CHECK, 2, T0 + 2),
        failed,
        held,
        StepFinished(
            CHECK,
            "failed",
            2.5,
            2,
            message="assertion failed: result.status == 200",
            output=CHECK_OUTPUT,
            result={"status": 503, "body": NASTY},
            assertions=(failed, held),
            artifacts=("artifacts/check.pcap",),
        ),
        StepStarted(FLAKY, 1, T0 + 3),
        StepFinished(FLAKY, "ignored", 0.2, 1, message="exit code 1", output="oops\n"),
        StepFinished(OPTIONAL, "skipped", 0.0, 0, message="when: false"),
        StepStarted(PROBE, 1, T0 + 4),
        StepFinished(PROBE, "passed", 0.05, 1),
        StepStarted(CLEANUP, 1, T0 + 5),
        StepFinished(CLEANUP, "error", 0.4, 1, message="pod gone: api-0\nthe pod was deleted"),
        StepNote(TARGET, "closing the target session failed: EOF"),
        RunFinished("failed", 1, 3.2, {"passed": 2, "failed": 1}, message="1 step failed"),
    ]


def interrupted_run() -> list[Event]:
    return [
        run_started(),
        StepStarted(DEPLOY, 1, T0),
        StepFinished(DEPLOY, "passed", 0.1, 1),
        StepStarted(CHECK, 1, T0 + 1),
        StepOutput(CHECK, "stdout", "waiting for traffic"),
    ]


def feed(reporter: object, events: list[Event], close: bool = True) -> None:
    for event in events:
        reporter.handle(event)  # type: ignore[attr-defined]
    if close:
        reporter.close()  # type: ignore[attr-defined]


def clock() -> float:
    return T0 + 10


# -- RunRecord ------------------------------------------------------------------------------


def test_record_failed_run_model() -> None:
    log = RunLog(clock=clock)
    feed(log, failed_run())
    (run,) = log.runs
    assert run.complete and run.status == "failed" and run.exit_code == 1
    assert [s.qualified_name for s in run.steps] == [
        "deploy",
        "check health",
        "flaky",
        "optional",
        "lib/check / probe",
        "cleanup",
    ]
    assert run.totals == {
        "steps": 6,
        "passed": 2,
        "failed": 1,
        "skipped": 1,
        "ignored": 1,
        "error": 1,
        "incomplete": 0,
    }
    check = run.steps[1]
    assert check.attempts == 2
    assert check.output == CHECK_OUTPUT  # streamed chunks, not doubled by StepFinished.output
    assert [a.expression for a in check.assertions] == ["result.status == 200", "result.elapsed < 2"]
    assert check.failed_assertions[0].values == {"result.status": "503", "token": "***"}
    assert run.steps[0].notes == ["paused: inspect the pod now"]
    assert [(n.source, n.message) for n in run.notes] == [
        ("target", "closing the target session failed: EOF")
    ]
    assert [s.ref for s in run.problem_steps] == [CHECK, FLAKY, CLEANUP]
    text = check.failure_text()
    assert "result.status = 503" in text and "status was 503" in text and "line 120" in text


def test_record_streamed_output_without_finished_output() -> None:
    run = RunRecord(run_started(), clock=clock)
    run.handle(StepStarted(DEPLOY, 1, T0))
    run.handle(StepOutput(DEPLOY, "stdout", "a\n"))
    run.handle(StepOutput(DEPLOY, "stderr", "b\n"))
    run.handle(StepFinished(DEPLOY, "passed", 1.0, 1))
    run.handle(StepOutput(DEPLOY, "pod/x", "late\n"))  # a background step keeps talking
    assert run.steps[0].output == "a\nb\nlate\n"


def test_record_output_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kdiag.reports.steprecord.MAX_RECORD_OUTPUT", 10)
    run = RunRecord(run_started(), clock=clock)
    run.handle(StepOutput(DEPLOY, "stdout", "0123456789"))
    run.handle(StepOutput(DEPLOY, "stdout", "abcdefghijklmnop"))
    step = run.steps[0]
    assert step.output == "ghijklmnop" and step.output_dropped == 16
    assert "the first 16 characters were cut" in step.failure_text()


def test_record_interrupted_is_incomplete() -> None:
    log = RunLog(clock=clock)
    feed(log, interrupted_run())
    (run,) = log.runs
    assert not run.complete and run.status == "incomplete"
    assert run.duration == 10
    check = run.steps[1]
    assert check.status == "incomplete" and check.duration == 9
    assert check.output == "waiting for traffic"
    assert check.summary_message() == "the step did not finish"
    assert run.totals["incomplete"] == 1


def test_record_events_before_run_started_and_two_runs() -> None:
    log = RunLog(clock=clock)
    log.handle(StepFinished(DEPLOY, "passed", 0.1, 1))
    feed(log, passed_run())
    assert len(log.runs) == 2 and log.runs[0].status == "incomplete"
    assert log.runs[1].status == "passed"


def test_record_to_dict_is_json_ready() -> None:
    log = RunLog(clock=clock)
    events = passed_run()
    events[0] = RunStarted("r", "r.yaml", {"obj": object(), "nan": float("nan"), "set": {1}}, None, 0, T0)
    feed(log, events)
    json.dumps(log.to_dict(), allow_nan=False)


# -- JSON -----------------------------------------------------------------------------------


def test_json_failed_run_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.json"
    feed(JsonReporter(str(path), clock=clock), failed_run())
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["format"] == "kdiag.report/v1" and doc["complete"] is True
    (run,) = doc["runs"]
    assert run["status"] == "failed" and run["exit_code"] == 1 and run["message"] == "1 step failed"
    assert run["params"] == {"namespace": "staging", "token": "***", "port": 8080, "selector": "a|b"}
    assert run["totals"]["failed"] == 1 and run["totals"]["steps"] == 6
    check = run["steps"][1]
    assert check["qualified_name"] == "check health" and check["kind"] == "http"
    assert check["status"] == "failed" and check["attempts"] == 2 and check["duration"] == 2.5
    assert check["message"] == "assertion failed: result.status == 200"
    assert check["output"] == CHECK_OUTPUT  # verbatim, control characters included
    assert check["result"] == {"status": 503, "body": NASTY}
    assert check["assertions"][0] == {
        "expression": "result.status == 200",
        "passed": False,
        "values": {"result.status": "503", "token": "***"},
        "message": "status was 503",
    }
    assert check["artifacts"] == ["artifacts/check.pcap"]
    assert run["steps"][0]["notes"] == ["paused: inspect the pod now"]
    assert run["notes"] == [{"source": "target", "message": "closing the target session failed: EOF"}]
    assert run["steps"][4]["path"] == ["lib/check"] and run["steps"][5]["phase"] == "finally"


def test_json_interrupted_written_on_close(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    feed(JsonReporter(str(path), clock=clock), interrupted_run())
    doc = json.loads(path.read_text())
    assert doc["complete"] is False
    assert doc["runs"][0]["status"] == "incomplete"
    assert doc["runs"][0]["steps"][1]["status"] == "incomplete"


def test_json_adds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_TOKEN", SECRET)
    path = tmp_path / "r.json"
    feed(JsonReporter(str(path)), failed_run())
    text = path.read_text()
    assert "***" in text and SECRET not in text


# -- JUnit ----------------------------------------------------------------------------------


def junit(tmp_path: Path, events: list[Event]) -> tuple[str, ET.Element]:
    path = tmp_path / "junit.xml"
    feed(JunitReporter(str(path), clock=clock), events)
    raw = path.read_bytes()
    return raw.decode("utf-8"), ET.fromstring(raw)


def test_junit_failed_run(tmp_path: Path) -> None:
    _, root = junit(tmp_path, failed_run())
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "redirect-api"
    counts = {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped", "time")}
    assert counts == {"tests": "6", "failures": "1", "errors": "1", "skipped": "1", "time": "3.200"}
    assert root.get("tests") == "6" and root.get("failures") == "1"
    assert suite.get("timestamp") == "2023-11-14T22:13:20"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["param.token"] == "***" and props["param.port"] == "8080"
    assert props["file"] == "runbooks/redirect-api.yaml" and props["status"] == "failed"

    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "deploy",
        "check health",
        "flaky",
        "optional",
        "lib/check / probe",
        "cleanup",
    ]
    assert {c.get("classname") for c in cases} == {"redirect-api"}
    assert "note (target): closing the target session failed: EOF" in suite.findtext("system-out", "")
    deploy, check, flaky, optional, probe, cleanup = cases
    assert deploy.find("failure") is None and deploy.findtext("system-out") is not None
    assert "note: paused: inspect the pod now" in deploy.findtext("system-out", "")

    failure = check.find("failure")
    assert failure is not None and check.get("time") == "2.500"
    assert failure.get("message") == "assertion failed: result.status == 200"
    body = failure.text or ""
    assert "[FAILED] result.status == 200" in body and "result.status = 503" in body
    assert "status was 503" in body and "[passed] result.elapsed < 2" in body
    assert "line 1\n" in body and "line 120" in body and "artifacts/check.pcap" in body
    # Markup survives escaping; what XML cannot carry (and ANSI colour codes) is stripped.
    assert "<b>&amp; \"q\" 'a' red  ünïcödé ✓ 😀 ]]> --" in body
    assert "line 120" in check.findtext("system-out", "")

    assert flaky.find("failure") is None and flaky.find("error") is None
    assert "ignored failure" in flaky.findtext("system-out", "") and "exit code 1" in flaky.findtext(
        "system-out", ""
    )
    skipped = optional.find("skipped")
    assert skipped is not None and skipped.get("message") == "when: false"
    assert probe.find("failure") is None
    error = cleanup.find("error")
    assert error is not None and error.get("message") == "pod gone: api-0"
    assert "the pod was deleted" in (error.text or "")


def test_junit_passed_run(tmp_path: Path) -> None:
    _, root = junit(tmp_path, passed_run())
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "0")
    assert [c.get("name") for c in suite.iter("testcase")] == ["deploy", "check health"]
    assert suite.find("testcase/failure") is None


def test_junit_interrupted_written_on_close(tmp_path: Path) -> None:
    _, root = junit(tmp_path, interrupted_run())
    suite = root.find("testsuite")
    assert suite is not None and suite.get("errors") == "1" and suite.get("tests") == "2"
    error = suite.find("testcase[@name='check health']/error")
    assert error is not None and error.get("type") == "incomplete"
    assert "waiting for traffic" in (error.text or "")
    assert suite.find("testcase[@name='(run)']") is None  # the unfinished step carries it


def test_junit_run_error_without_steps(tmp_path: Path) -> None:
    events: list[Event] = [
        run_started(),
        RunFinished("error", 3, 0.1, {}, message="cluster unreachable: connection refused"),
    ]
    _, root = junit(tmp_path, events)
    error = root.find("testsuite/testcase[@name='(run)']/error")
    assert error is not None and error.get("message") == "cluster unreachable: connection refused"
    assert root.get("errors") == "1"


def test_junit_no_events_at_all(tmp_path: Path) -> None:
    _, root = junit(tmp_path, [])
    assert root.find("testsuite") is None and root.get("tests") == "0"


def test_junit_adds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_TOKEN", SECRET)
    raw, _ = junit(tmp_path, failed_run())
    assert "***" in raw and SECRET not in raw


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(), name=st.text(min_size=1))
def test_junit_any_text_parses(tmp_path: Path, text: str, name: str) -> None:
    ref = StepRef(0, name, "shell")
    events: list[Event] = [
        RunStarted(name, "f.yaml", {name: text}, None, 1, T0),
        StepFinished(
            ref,
            "failed",
            0.1,
            1,
            message=text,
            output=text,
            assertions=(AssertionResult(ref, text, False, {name: text}, text),),
        ),
        RunFinished("failed", 1, 0.1, {}, message=text),
    ]
    path = tmp_path / "any.xml"
    feed(JunitReporter(str(path)), events)
    root = ET.fromstring(path.read_bytes())
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == xml_safe(name)
    failure_text = case.findtext("failure", "")
    assert xml_safe(text).rstrip("\n") in failure_text


# -- markdown -------------------------------------------------------------------------------


def markdown(tmp_path: Path, events: list[Event]) -> str:
    path = tmp_path / "report.md"
    feed(MarkdownReporter(str(path), clock=clock, output_lines=100), events)
    return path.read_text(encoding="utf-8")


def test_markdown_failed_run(tmp_path: Path) -> None:
    md = markdown(tmp_path, failed_run())
    assert md.startswith("# kdiag report: redirect-api\n")
    assert "**❌ FAILED** · exit code 1 · 2 passed, 1 failed, 1 skipped, 1 ignored, 1 error" in md
    assert "> 1 step failed" in md
    assert "| `token` | `***` |" in md and "| `selector` | `a\\|b` |" in md
    row = "| 2 | check health | http | ❌ failed | 2.50s | 2 | assertion failed: result.status == 200 |"
    assert row in md
    assert "| 6 | cleanup | shell (finally) | 💥 error |" in md
    assert "pod gone: api-0<br>the pod was deleted" in md
    assert "## Failures" in md and "### 2. ❌ check health" in md
    assert "- ❌ `result.status == 200` — status was 503" in md
    assert "  - `result.status` = `503`" in md
    assert "**Output (last 100 of 121 lines):**" in md
    assert "\nline 22\n" in md and "\nline 21\n" not in md
    assert "### 3. ⚠️ flaky" in md and "### 6. 💥 cleanup" in md
    assert "### 1." not in md  # passed steps get no details
    assert "## Notes\n\n- **deploy**: paused: inspect the pod now\n" in md
    assert "- **target**: closing the target session failed: EOF\n" in md
    assert "\x1b" not in md and "\x00" not in md and "😀" in md


def test_markdown_passed_and_interrupted(tmp_path: Path) -> None:
    md = markdown(tmp_path, passed_run())
    assert "**✅ PASSED** · exit code 0 · 2 passed" in md and "## Failures" not in md
    md = markdown(tmp_path, interrupted_run())
    assert "**⏸️ INCOMPLETE**" in md and "### 2. ⏸️ check health" in md
    assert "waiting for traffic" in md


def test_markdown_fences_and_code_spans_cannot_be_broken() -> None:
    assert fence("a\n```\nb") == "````text\na\n```\nb\n````\n".replace("````text", "````")
    assert fence("x", "text").startswith("```text\n")
    assert code("a `b` c") == "``a `b` c``"
    assert code("`x`") == "`` `x` ``"


def test_markdown_adds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_TOKEN", SECRET)
    md = markdown(tmp_path, failed_run())
    assert "***" in md and SECRET not in md


# -- artifacts ------------------------------------------------------------------------------


def test_artifacts_layout(tmp_path: Path) -> None:
    root = tmp_path / "arts"
    events = failed_run()
    # A background log capture: output keeps coming after the step finished.
    events.insert(-1, StepOutput(PROBE, "pod/api-1", "late line\n"))
    feed(ArtifactsReporter(str(root), clock=clock), events)
    names = sorted(p.name for p in root.iterdir())
    # Folders are named like the engine's (run-wide number + slug).
    assert names == [
        "01-deploy",
        "02-check-health",
        "03-lib-check-probe",
        "04-flaky",
        "05-optional",
        "06-cleanup",
        "run.json",
    ]
    check = root / "02-check-health"
    assert (check / "output.log").read_text(encoding="utf-8") == CHECK_OUTPUT
    result = json.loads((check / "result.json").read_text())
    assert result["status"] == "failed" and "output" not in result
    assert result["assertions"][0]["values"] == {"result.status": "503", "token": "***"}
    assert (root / "05-optional" / "output.log").read_text() == ""
    assert (root / "03-lib-check-probe" / "output.log").read_text() == "late line\n"
    run = json.loads((root / "run.json").read_text())
    assert run["runs"][0]["steps"][1]["output"] == CHECK_OUTPUT


def test_artifacts_streamed_and_interrupted(tmp_path: Path) -> None:
    root = tmp_path / "a"
    feed(ArtifactsReporter(str(root), clock=clock), interrupted_run())
    assert (root / "02-check-health" / "output.log").read_text() == "waiting for traffic"
    result = json.loads((root / "02-check-health" / "result.json").read_text())
    assert result["status"] == "incomplete"
    assert json.loads((root / "run.json").read_text())["complete"] is False


def test_artifacts_adds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_TOKEN", SECRET)
    root = tmp_path / "a"
    feed(ArtifactsReporter(str(root)), failed_run())
    text = "".join(p.read_text(encoding="utf-8") for p in root.rglob("*") if p.is_file())
    assert "***" in text and SECRET not in text


def test_slug_and_folder_names() -> None:
    assert slug("lib/check / Probe #1") == "lib-check-Probe-1"
    assert slug("../../etc") == "etc" and slug("..") == "step"
    assert slug("日本") == "step"
    assert len(slug("x" * 500)) == 60
    assert step_folder_name(1, "check v1.2_x") == "01-check-v1.2_x"


def test_artifacts_same_folder_name_twice_and_streamed_output_wins(tmp_path: Path) -> None:
    # Refs from outside the engine may share a number; the second folder gets a suffix.
    main, final = StepRef(0, "x", "shell", seq=1), StepRef(0, "x", "shell", phase="finally", seq=1)
    events: list[Event] = [
        run_started(),
        StepOutput(main, "stdout", "complete output\n"),
        StepFinished(main, "passed", 0.1, 1, output="tail only\n"),  # the engine's kept tail
        StepFinished(final, "passed", 0.1, 1, output="captured\n"),
    ]
    feed(ArtifactsReporter(str(tmp_path)), events)
    assert (tmp_path / "01-x" / "output.log").read_text() == "complete output\n"
    assert (tmp_path / "01-x-2" / "output.log").read_text() == "captured\n"
    assert json.loads((tmp_path / "01-x-2" / "result.json").read_text())["phase"] == "finally"


# -- make_reporters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("report.json", "expected json=PATH"),
        ("xml2=out.xml", "unknown report format 'xml2'"),
        ("json=", "missing file path"),
        ("junit= ", "missing file path"),
    ],
)
def test_bad_report_spec(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        make_reporters(False, [spec], None)


def test_report_spec_rejects_directory_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        parse_report_spec(f"json={tmp_path}")
    with pytest.raises(UsageError, match="also the target"):
        make_reporters(False, [f"json={tmp_path}/a", f"md={tmp_path}/a"], None)


def test_make_reporters_builds_each_kind(tmp_path: Path) -> None:
    specs = [f"json={tmp_path}/r.json", f"JUnit={tmp_path}/j.xml", f"markdown={tmp_path}/r.md"]
    reporters = make_reporters(True, specs, str(tmp_path / "arts"), stream=io.StringIO())
    kinds = [type(r) for r in reporters]
    assert kinds == [ConsoleReporter, JsonReporter, JunitReporter, MarkdownReporter, ArtifactsReporter]
    assert (tmp_path / "arts").is_dir()
    for event in passed_run():
        for r in reporters:
            r.handle(event)
    close_all(reporters)
    assert {p.name for p in tmp_path.iterdir()} == {"r.json", "j.xml", "r.md", "arts"}
    assert make_reporters(False, [], None) == []


def test_close_all_closes_every_reporter_then_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    reporters = make_reporters(False, [f"json={blocker}/x.json", f"md={tmp_path}/ok.md"], None)
    with pytest.raises(EnvironmentProblem, match="cannot write the JSON report"):
        close_all(reporters)
    assert (tmp_path / "ok.md").exists()


def test_artifacts_dir_that_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="--artifacts"):
        make_reporters(False, [], str(blocker / "sub"))


def test_reports_package_imports_no_rich_or_xml() -> None:
    code_ = (
        # What importing kdiag.reports adds (a tool loaded before it, such as coverage's
        # subprocess measurement, may have imported xml itself).
        "import sys\n"
        "before = set(sys.modules)\n"
        "import kdiag.reports\n"
        "bad = [m for m in set(sys.modules) - before if m.startswith(('rich', 'xml'))]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code_], check=True, env=env)


# -- console --------------------------------------------------------------------------------

ANSI = "\x1b"


def console_text(events: list[Event], **kwargs: object) -> tuple[str, ConsoleReporter]:
    buf = io.StringIO()
    reporter = ConsoleReporter(buf, env={}, **kwargs)  # type: ignore[arg-type]
    feed(reporter, events)
    return buf.getvalue(), reporter


def test_console_plain_failed_run() -> None:
    out, reporter = console_text(failed_run())
    assert reporter.mode == "plain"
    assert ANSI not in out and "\x00" not in out and "\x07" not in out
    lines = out.splitlines()
    assert lines[0] == "kdiag: redirect-api (runbooks/redirect-api.yaml, target pod/staging/api-0, 6 steps)"
    assert lines[1] == "params: namespace=staging, token=***, port=8080, selector=a|b"
    assert "[note] deploy: paused: inspect the pod now" in lines
    assert "[note] target: closing the target session failed: EOF" in lines
    assert "[ ok ] deploy (0.12s)" in lines
    assert "[FAIL] check health: assertion failed: result.status == 200 (2.50s, 2 attempts)" in lines
    assert "  │ line 120" in lines  # streamed as it came...
    assert out.count("  │ line 120") == 1  # ...and not repeated on failure
    assert "  │ <b>&amp; \"q\" 'a' red  ünïcödé ✓ 😀 ]]> --" in lines
    i = lines.index("[FAIL] check health: assertion failed: result.status == 200 (2.50s, 2 attempts)")
    assert lines[i + 1 : i + 5] == [
        "    ✘ result.status == 200",
        "        status was 503",
        "        result.status = 503",
        "        token = ***",
    ]
    assert "[IGNR] flaky: exit code 1 (0.20s)" in lines
    assert "    output (1 line):" in lines and "  │ oops" in lines  # never streamed: shown now
    assert "[SKIP] optional: when: false" in lines
    assert "[ERR ] cleanup: pod gone: api-0 (0.40s)" in lines and "    the pod was deleted" in lines
    assert any(
        line.split()
        == ["check", "health", "failed", "2.50s", "assertion", "failed:", "result.status", "==", "200"]
        for line in lines
    )
    assert any(line.split() == ["optional", "skipped", "-", "when:", "false"] for line in lines)
    assert lines[-1] == ("FAILED: 2 passed, 1 failed, 1 skipped, 1 ignored, 1 error in 3.20s — 1 step failed")


def test_console_plain_passed_run() -> None:
    out, _ = console_text(passed_run())
    assert "[ ok ] deploy (0.12s)" in out and "  │ hello" in out
    assert out.splitlines()[-1] == "PASSED: 2 passed in 0.50s"


def test_console_failure_tail_when_output_not_streamed() -> None:
    out, _ = console_text(failed_run(), stream_output=False)
    lines = out.splitlines()
    assert "    output (last 50 of 121 lines):" in lines
    assert "  │ line 72" in lines and "  │ line 71" not in lines and "  │ line 120" in lines


def test_console_background_output_is_labelled_and_partial_lines_flushed() -> None:
    bg = StepRef(5, "pod logs", "logs", path=())
    events: list[Event] = [
        run_started(),
        StepStarted(bg, 1, T0),
        StepFinished(bg, "passed", 0.01, 1),  # started in the background
        StepStarted(DEPLOY, 1, T0),
        StepOutput(DEPLOY, "stdout", "build "),
        StepOutput(bg, "api-0/app", "GET /health 200\nGET /x"),
        StepOutput(DEPLOY, "stdout", "ok\nno newline"),
        StepOutput(bg, "api-0/app", " 404\n"),
        StepFinished(DEPLOY, "passed", 1.0, 1),
        StepOutput(bg, "stderr", "tail without newline"),
        RunFinished("passed", 0, 1.0, {}),
    ]
    lines = console_text(events)[0].splitlines()
    assert "  │ [pod logs:api-0/app] GET /health 200" in lines
    assert "  │ [pod logs:api-0/app] GET /x 404" in lines
    assert "  │ build ok" in lines and "  │ no newline" in lines
    assert lines.index("  │ no newline") < lines.index("[ ok ] deploy (1.00s)")
    assert "  │ [pod logs] tail without newline" in lines


def test_console_carriage_returns_and_escapes_in_output() -> None:
    events: list[Event] = [
        run_started(),
        StepStarted(DEPLOY, 1, T0),
        StepOutput(DEPLOY, "stdout", "10%\r50%\r100%\r\n\x1b[1mbold\x1b[0m\x1b]0;title\x07\n"),
        StepFinished(DEPLOY, "passed", 1.0, 1, message="\x1b[31mred\x1b[0m msg"),
    ]
    out, _ = console_text(events)
    assert ANSI not in out and "\r" not in out
    assert "  │ 100%\n  │ bold\n" in out and "[ ok ] deploy: red msg (1.00s)" in out


def test_console_interrupted_prints_summary_on_close() -> None:
    out, _ = console_text(interrupted_run(), clock=clock)
    lines = out.splitlines()
    assert "[INCO] check health" not in lines  # no finish line for a step that did not finish
    assert "  │ waiting for traffic" in lines  # the partial line is flushed
    assert any(line.split()[:2] == ["check", "health"] and "incomplete" in line for line in lines)
    assert lines[-1].startswith("INCOMPLETE: 1 passed, 1 incomplete in 10.")


def test_console_no_color_on_a_terminal_is_plain() -> None:
    buf = io.StringIO()
    console = Console(force_terminal=True, file=buf, width=100)
    reporter = ConsoleReporter(console=console, env={"NO_COLOR": "1"})
    assert reporter.mode == "plain"
    feed(reporter, failed_run())
    assert ANSI not in buf.getvalue() and "[FAIL] check health" in buf.getvalue()


def test_console_live_mode_on_a_terminal() -> None:
    buf = io.StringIO()
    console = Console(force_terminal=True, file=buf, width=100)
    reporter = ConsoleReporter(console=console, env={})
    assert reporter.mode == "live"
    events = failed_run()
    for event in events[:5]:
        reporter.handle(event)
    time.sleep(0.3)  # let the refresh thread draw spinners
    for event in events[5:]:
        reporter.handle(event)
    reporter.close()
    out = buf.getvalue()
    assert ANSI in out
    plain = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]", "", out)
    assert "⠋" in plain or "⠙" in plain  # a spinner frame was drawn
    assert "✔ deploy (0.12s)" in plain
    assert "✘ check health: assertion failed: result.status == 200 (2.50s, 2 attempts)" in plain
    assert "result.status = 503" in plain
    assert "FAILED: 2 passed, 1 failed, 1 skipped, 1 ignored, 1 error in 3.20s" in plain
    assert reporter._live is None  # stopped


def test_console_live_mode_closed_mid_run() -> None:
    buf = io.StringIO()
    reporter = ConsoleReporter(console=Console(force_terminal=True, file=buf), env={})
    feed(reporter, interrupted_run())
    assert reporter._live is None
    assert "INCOMPLETE" in buf.getvalue()


def test_console_step_mode_uses_lines_not_live() -> None:
    buf = io.StringIO()
    console = Console(force_terminal=True, file=buf, width=100)
    reporter = ConsoleReporter(console=console, interactive=True, env={})
    assert reporter.mode == "lines"
    feed(reporter, passed_run())
    assert reporter._live is None
    plain = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]", "", buf.getvalue())
    assert "▶ deploy" in plain and "✔ deploy (0.12s)" in plain and "PASSED" in plain


def test_console_ascii_only_stream() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    reporter = ConsoleReporter(stream, env={})
    feed(reporter, failed_run())
    stream.flush()
    out = raw.getvalue().decode("ascii")
    assert "  | line 120" in out and "[FAIL] check health" in out and "    x result.status" in out


def test_console_adds_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_TOKEN", SECRET)
    out, _ = console_text(failed_run())
    assert "***" in out and SECRET not in out
    buf = io.StringIO()
    feed(ConsoleReporter(console=Console(force_terminal=True, file=buf), env={}), failed_run())
    assert "***" in buf.getvalue() and SECRET not in buf.getvalue()


def test_output_sources_get_stable_distinct_colours() -> None:
    from kdiag.reports.console_view import source_colour

    pods = [f"api-{i}/app" for i in range(6)]
    assert len({source_colour(p) for p in pods}) >= 3
    assert source_colour("api-1/app") == source_colour("api-1/app")
    assert source_colour("stdout") == "cyan"
