"""``--report md=PATH``: a markdown report to paste into a bug ticket (GitHub/GitLab flavour).

A title, a status line, the run's timeline (a Mermaid ``gantt`` chart, which code hosts draw;
``md-text=PATH`` draws it as fixed-width text instead), a params table, a steps table, then a
details section per step that failed, errored, was ignored after failing, or did not finish:
message, assertions with their values, notes and the tail of its output in a fence. Notes
(``pause``/``note`` steps) get their own section so a reader sees what the operator was told.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kdiag.reports.record import FileReporter, RunRecord
from kdiag.reports.steprecord import StepRecord
from kdiag.reports.text import format_duration, readable, tail_lines, value_text
from kdiag.reports.timeline import build
from kdiag.reports.timeline_render import mermaid, text_chart

_STEP_MARK = {
    "passed": "✅",
    "failed": "❌",
    "skipped": "⏭️",
    "ignored": "⚠️",
    "error": "💥",
    "incomplete": "⏸️",
    "running": "⏸️",
}
_RUN_MARK = {
    "passed": "✅",
    "failed": "❌",
    "error": "💥",
    "interrupted": "⛔",
    "invalid": "🚫",
    "incomplete": "⏸️",
}
# Characters that would start markup in running text or table cells.
_MD_SPECIAL_RE = re.compile(r"([\\`*_\[\]|~])")


class MarkdownReporter(FileReporter):
    """Writes the markdown report at close; ``output_lines`` caps each failure's output;
    ``timeline`` is ``mermaid`` (a chart code hosts draw) or ``text`` (fixed-width)."""

    kind = "markdown"

    def __init__(self, path: str, *, output_lines: int = 200, timeline: str = "mermaid",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(path, clock=clock)
        self.output_lines = output_lines
        self.timeline = timeline

    def render(self) -> str:
        """The markdown document."""
        runs = self.log.runs or [RunRecord()]
        return "\n---\n\n".join(render_run(r, self.output_lines, self.timeline) for r in runs)


def timeline_section(run: RunRecord, style: str = "mermaid") -> str:
    """``## Timeline`` and the chart (Mermaid or fixed-width text), or "" when no step ran."""
    timeline = build(run)
    if not timeline.drawn:
        return ""
    if style == "text":
        return "## Timeline\n\n" + fence(text_chart(timeline), "text")
    title = f"{run.runbook or run.file or 'run'} · {run.status.upper()}"
    return "## Timeline\n\n" + fence(mermaid(timeline, title), "mermaid")


def render_run(run: RunRecord, output_lines: int = 200, timeline: str = "mermaid") -> str:
    """Markdown for one run."""
    out: list[str] = []
    title = run.runbook or run.file or "run"
    out.append(f"# kdiag report: {inline(title)}\n")
    out.append(_status_line(run) + "\n")
    if run.message:
        out.append(f"> {inline(run.message)}\n")

    info = [("Runbook file", code(run.file) if run.file else "")]
    if run.target:
        info.append(("Target", code(run.target)))
    if run.started_at is not None:
        started = datetime.fromtimestamp(run.started_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        info.append(("Started", started))
    if run.dry_run:
        info.append(("Dry run", "yes"))
    out.extend(f"- **{k}:** {v}" for k, v in info if v)
    out.append("")
    chart = timeline_section(run, timeline)
    if chart:
        out.append(chart)

    out.append("## Parameters\n")
    if run.params:
        rows = [[code(str(k)), _value_cell(value_text(v))] for k, v in run.params.items()]
        out.append(_table(["Name", "Value"], rows))
    else:
        out.append("_none_\n")

    out.append("## Steps\n")
    if run.steps:
        rows = [
            [
                str(s.number),
                cell(s.qualified_name),
                s.ref.kind + (" (finally)" if s.ref.phase == "finally" else ""),
                f"{_STEP_MARK.get(s.status, '')} {s.status}",
                "-" if s.status == "skipped" else format_duration(s.duration),
                _attempts_cell(s),
                cell(s.summary_message()),
            ]
            for s in run.steps
        ]
        out.append(_table(["#", "Step", "Kind", "Status", "Duration", "Attempts", "Message"], rows))
    else:
        out.append("_no steps ran_\n")

    fanned = [s for s in run.steps if s.pod_lines]
    if fanned:
        out.append("## Pods\n")
        for step in fanned:
            out.append(f"- **{step.number}. {inline(step.qualified_name)}**")
            out.extend(f"  - {inline(line)}" for line in step.pod_lines)
        out.append("")

    problems = run.problem_steps
    if problems:
        out.append("## Failures\n")
        for step in problems:
            out.append(_details(step, output_lines))

    retried = [s for s in run.steps if s.status == "passed" and s.failed_attempts]
    if retried:
        out.append("## Passed after failed attempts\n")
        for step in retried:
            out.append(f"### {step.number}. {inline(step.qualified_name)}\n")
            out.append(fence(step.attempts_text(), "text"))

    notes = [(s.qualified_name, n) for s in run.steps for n in s.notes]
    notes += [(n.source, n.message) for n in run.notes]
    if notes:
        out.append("## Notes\n")
        out.extend(f"- **{inline(source)}**: {inline(message)}" for source, message in notes)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _attempts_cell(step: StepRecord) -> str:
    """``3 (2 failed)`` for a step that passed after failed attempts."""
    if not step.attempts:
        return "-"
    failed = len(step.failed_attempts)
    return f"{step.attempts} ({failed} failed)" if failed and step.status == "passed" \
        else str(step.attempts)


def _status_line(run: RunRecord) -> str:
    mark = _RUN_MARK.get(run.status, "")
    parts = [f"**{mark + ' ' if mark else ''}{run.status.upper()}**"]
    if run.exit_code is not None:
        parts.append(f"exit code {run.exit_code}")
    totals = run.totals
    counts = ", ".join(f"{totals[k]} {k}" for k in totals if k != "steps" and totals[k])
    parts.append(counts or "no steps")
    parts.append(format_duration(run.duration))
    return " · ".join(parts)


def _details(step: StepRecord, output_lines: int) -> str:
    out = [f"### {step.number}. {_STEP_MARK.get(step.status, '')} {inline(step.qualified_name)}"]
    out.append("")
    out.append(
        f"**Status:** {step.status} · **Kind:** {inline(step.ref.kind)} · "
        f"**Duration:** {format_duration(step.duration)} · **Attempts:** {step.attempts}"
    )
    out.append("")
    message = step.summary_message()
    if message:
        out.append(fence(message, "text"))
    if step.assertions:
        out.append("**Assertions:**\n")
        for a in step.assertions:
            out.append(
                f"- {'✅' if a.passed else '❌'} {code(a.expression)}"
                + (f" — {inline(a.message)}" if a.message else "")
            )
            for name, value in a.values.items():
                if "\n" in value:
                    out.append(f"  - {code(name)} =\n\n" + _indent(fence(value, "text"), 4))
                else:
                    out.append(f"  - {code(name)} = {code(value)}")
        out.append("")
    if step.attempts_text():
        out.append(f"**{inline(step.attempts_text().partition(chr(10))[0])}**\n")
        out.append(fence(step.attempts_text().partition("\n")[2], "text"))
    if step.notes:
        out.append("**Notes:**\n")
        out.extend(f"- {inline(n)}" for n in step.notes)
        out.append("")
    if step.artifacts:
        out.append("**Artifacts:** " + ", ".join(code(a) for a in step.artifacts) + "\n")
    lines, cut = tail_lines(readable(step.output), output_lines)
    if lines:
        note = f" (last {len(lines)} of {len(lines) + cut} lines)" if cut else ""
        out.append(f"**Output{note}:**\n")
        out.append(fence("\n".join(lines), "text"))
    else:
        out.append("**Output:** _none_\n")
    return "\n".join(out)


def inline(text: str) -> str:
    """``text`` as running markdown text on one line: markup characters escaped."""
    text = readable(text).replace("\n", " ")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL_RE.sub(r"\\\1", text)


def cell(text: str) -> str:
    """``text`` for a table cell: escaped, newlines as ``<br>``."""
    return "<br>".join(inline(line) for line in readable(text).split("\n"))


def code(text: str) -> str:
    """``text`` as an inline code span (a fence longer than any backtick run inside)."""
    text = readable(text).replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fence(text: str, lang: str = "") -> str:
    """``text`` in a fenced code block whose fence no line of ``text`` can close."""
    text = readable(text).rstrip("\n")
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text}\n{ticks}\n"


def _value_cell(value: str) -> str:
    # Code spans keep values exact; a pipe must still be escaped inside a table (GFM rule).
    if "\n" in value or not value:
        return cell(value)
    return code(value).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def _indent(text: str, width: int) -> str:
    pad = " " * width
    return "\n".join(pad + line if line else line for line in text.split("\n"))
