"""``--report junit=PATH``: JUnit XML for CI (a testsuite per runbook, a testcase per step).

Layout (the de-facto schema Jenkins, GitLab and GitHub annotations read)::

    <testsuites name="kdiag" tests= failures= errors= skipped= time=>
      <testsuite name=RUNBOOK tests= failures= errors= skipped= time= timestamp=>
        <properties><property name="file" value=.../> <property name="param.X" .../></properties>
        <testcase classname=RUNBOOK name="parent / step" time=>
          <properties><property name="attempts" .../> ...</properties>   (retried steps)
          <failure message=... type="failed">message, assertions with values, output</failure>
          <flakyFailure message=... type="failed">...</flakyFailure>      (passed after failures)
          <system-out>captured output</system-out>
        </testcase>

``failed`` steps get ``<failure>``, ``error`` and unfinished steps ``<error>``, ``skipped`` steps
``<skipped>``. ``ignored`` steps (failed under ``continue_on_error``) pass, with the failure text
in ``<system-out>`` so it is not lost. A run that ended in an error, an interruption or without
``RunFinished`` and whose cause no step carries gets an extra ``(run)`` testcase with an
``<error>``, so CI never shows a green, empty suite for a broken run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from kdiag.reports.record import FileReporter, RunRecord
from kdiag.reports.steprecord import StepRecord
from kdiag.reports.text import first_line, value_text, xml_safe

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

_MESSAGE_WIDTH = 500


class JunitReporter(FileReporter):
    """Writes the JUnit XML report at close."""

    kind = "JUnit"

    def render(self) -> str:
        """The XML document."""
        import xml.etree.ElementTree as ET

        root = ET.Element("testsuites", name="kdiag")
        totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
        total_time = 0.0
        for run in self.log.runs:
            suite = _suite(run)
            root.append(suite)
            for key in totals:
                totals[key] += int(suite.get(key, "0"))
            total_time += float(suite.get("time", "0"))
        for key, value in totals.items():
            root.set(key, str(value))
        root.set("time", _secs(total_time))
        ET.indent(root)
        body = ET.tostring(root, encoding="unicode")
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _suite(run: RunRecord) -> Element:
    import xml.etree.ElementTree as ET

    name = run.runbook or run.file or "kdiag"
    suite = ET.Element("testsuite", name=_x(name))
    if run.started_at is not None:
        stamp = datetime.fromtimestamp(run.started_at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        suite.set("timestamp", stamp)
    props = ET.SubElement(suite, "properties")
    run_props = {
        "file": run.file,
        "target": run.target or "",
        "status": run.status,
        "exit_code": "" if run.exit_code is None else str(run.exit_code),
        "dry_run": str(run.dry_run).lower(),
    }
    if run.message:
        run_props["message"] = run.message
    for key, value in run_props.items():
        ET.SubElement(props, "property", name=key, value=_x(value))
    for key, value in run.params.items():
        ET.SubElement(props, "property", name=_x(f"param.{key}"), value=_x(value_text(value)))

    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for step in run.steps:
        suite.append(_testcase(name, step, counts))
    if _needs_run_case(run):
        case = ET.SubElement(suite, "testcase", classname=_x(name), name="(run)", time="0.000")
        message = run.message or _run_status_text(run)
        err = ET.SubElement(case, "error", message=_x(first_line(message, _MESSAGE_WIDTH)))
        err.set("type", run.status)
        err.text = _x(message)
        counts["tests"] += 1
        counts["errors"] += 1
    if run.notes:
        notes = "\n".join(f"note ({n.source}): {n.message}" for n in run.notes)
        ET.SubElement(suite, "system-out").text = _x(notes)
    for key, count in counts.items():
        suite.set(key, str(count))
    duration = run.duration
    if duration is None:
        duration = sum(s.duration or 0.0 for s in run.steps)
    suite.set("time", _secs(duration))
    return suite


def _testcase(classname: str, step: StepRecord, counts: dict[str, int]) -> Element:
    import xml.etree.ElementTree as ET

    case = ET.Element("testcase", classname=_x(classname), name=_x(step.qualified_name))
    case.set("time", _secs(step.duration or 0.0))
    _attempts(case, step)
    counts["tests"] += 1
    message = _x(first_line(step.summary_message(), _MESSAGE_WIDTH))
    if step.status == "failed":
        counts["failures"] += 1
        el = ET.SubElement(case, "failure", message=message, type="failed")
        el.text = _x(step.failure_text())
    elif step.status in ("error", "incomplete", "running"):
        counts["errors"] += 1
        el = ET.SubElement(case, "error", message=message, type=step.status)
        el.text = _x(step.failure_text())
    elif step.status == "skipped":
        counts["skipped"] += 1
        ET.SubElement(case, "skipped", message=message)
    out = step.output
    if step.status == "passed" and step.failed_attempts:
        out = _passed_after(step) + ("\n\n" + out if out else "")
    if step.status == "ignored":
        # The step failed but continue_on_error let the run go on: it is not a CI failure, yet
        # its failure must stay visible to whoever reads the report.
        out = "ignored failure (continue_on_error):\n" + step.failure_text()
    elif step.notes and step.status not in ("failed", "error", "incomplete", "running"):
        out = "\n".join(f"note: {n}" for n in step.notes) + ("\n\n" + out if out else "")
    if step.pod_lines and step.status in ("passed", "skipped"):  # else in the failure text
        out = "\n".join(f"pod {line}" for line in step.pod_lines) + ("\n\n" + out if out else "")
    if out:
        ET.SubElement(case, "system-out").text = _x(out)
    return case


def _attempts(case: Element, step: StepRecord) -> None:
    """A step that took more than one attempt says so: ``attempts`` and ``failed_attempts``
    properties, and for one that passed in the end, a ``<flakyFailure>`` per failed attempt
    (Maven Surefire's convention for a test that passed on a rerun; readers that do not know
    it skip it, and the same lines open its ``<system-out>``)."""
    import xml.etree.ElementTree as ET

    if len(step.attempt_log) < 2:
        return
    props = ET.SubElement(case, "properties")
    for name, value in (("attempts", len(step.attempt_log)),
                        ("failed_attempts", len(step.failed_attempts))):
        ET.SubElement(props, "property", name=name, value=str(value))
    if step.status != "passed":
        return
    for attempt in step.failed_attempts:
        flaky = ET.SubElement(case, "flakyFailure", type=attempt.status,
                              message=_x(first_line(attempt.line(), _MESSAGE_WIDTH)))
        ET.SubElement(flaky, "stackTrace").text = _x(attempt.line())


def _passed_after(step: StepRecord) -> str:
    failed = len(step.failed_attempts)
    return (f"passed on attempt {len(step.attempt_log)} after {failed} failed "
            f"attempt{'s' if failed != 1 else ''}:\n" + step.attempts_text().partition("\n")[2])


def _needs_run_case(run: RunRecord) -> bool:
    """A broken run whose cause is on no step gets a synthetic ``(run)`` testcase."""
    if run.status in ("passed", "failed"):
        return False
    return not any(s.status in ("error", "incomplete") for s in run.steps)


def _run_status_text(run: RunRecord) -> str:
    if run.status == "incomplete":
        return "the run did not finish (no RunFinished event: kdiag was stopped or crashed)"
    return f"run {run.status}"


def _secs(value: float) -> str:
    return f"{max(0.0, value):.3f}"


def _x(text: str) -> str:
    return xml_safe(text)
