"""The console's closing table: one row per step, the same columns on a terminal and piped.

``STEP  STATUS  DURATION  DETAILS``, aligned, with the status coloured on a terminal; there it
also has a ``TIMELINE`` column: a one-line bar per step over the run's time (``█`` ran, ``▒`` a
failed attempt, ``░`` background work up). Piped (or with ``NO_COLOR``) the table stays plain
text without it. A step skipped because of what stopped the run says ``not run``: the cause is
in the verdict below the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdiag.reports.console_view import STYLE, Segment
from kdiag.reports.record import RunRecord
from kdiag.reports.steprecord import StepRecord
from kdiag.reports.text import first_line, format_duration
from kdiag.reports.timeline import build
from kdiag.reports.timeline_render import console_bar

BAR_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "ignored": "yellow",
             "incomplete": "magenta", "running": "magenta"}
MAX_NAME = 44
"""Characters of a step's name on a terminal (the rest is cut with …)."""
MIN_BAR, MAX_BAR = 12, 48
DETAILS = 80


@dataclass(frozen=True)
class Layout:
    """How wide the table may be: ``width`` None when piped (no limit, no bars)."""

    width: int | None
    unicode: bool = True


def not_run_details(step: StepRecord, run: RunRecord) -> str:
    """The details of a step in the table: ``not run`` when the cause is the run's own (the
    verdict says it), or an earlier failure (the table shows it)."""
    message = step.summary_message()
    cause = message.removeprefix("not run: ")
    if step.status == "skipped" and cause != message and (
            cause == run.message or cause == "an earlier step failed"):
        return "not run"
    return "" if step.status == "passed" else first_line(message, DETAILS)


def _cut(text: str, width: int, unicode: bool) -> str:
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ("…" if unicode else "~")


def table(run: RunRecord, layout: Layout) -> list[list[Segment]]:
    """The table's lines (a header, then a row per step), each a list of styled segments."""
    steps = run.steps
    terminal = layout.width is not None
    names = [s.qualified_name for s in steps]
    name_w = max([len("STEP"), *map(len, names)])
    status_w = max([len("STATUS"), *(len(s.status) for s in steps)])
    durations = [_duration(s) for s in steps]
    dur_w = max([len("DURATION"), *map(len, durations)])
    others = 2 + 2 + status_w + 2 + dur_w + 2
    if layout.width is not None:  # names first, then a bar, then some details
        name_w = min(name_w, MAX_NAME, max(16, layout.width - others - MIN_BAR - 2 - 16))
    fixed = others + name_w
    bars: list[str] = []
    bar_w = 0
    if terminal and layout.unicode and layout.width is not None:
        timeline = build(run)
        head = f"TIMELINE {format_duration(timeline.duration)}"
        bar_w = max(MIN_BAR, len(head), min(MAX_BAR, layout.width - fixed - 2 - 24))
        by_number = {b.number: b for b in timeline.bars}
        bars = [console_bar(by_number[s.number], timeline, bar_w) for s in steps]
    header: list[Segment] = [(f"  {'STEP':<{name_w}}  {'STATUS':<{status_w}}  "
                              f"{'DURATION':>{dur_w}}  ", "bold")]
    if bars:
        header.append((f"{head:<{bar_w}}  ", "bold"))
    header.append(("DETAILS", "bold"))
    lines = [header]
    for index, step in enumerate(steps):
        details = not_run_details(step, run)
        row: list[Segment] = [
            (f"  {_cut(names[index], name_w, layout.unicode):<{name_w}}  ", ""),
            (f"{step.status:<{status_w}}", STYLE.get(step.status, "")),
            (f"  {durations[index]:>{dur_w}}  ", ""),
        ]
        if bars:
            row.append((f"{bars[index]:<{bar_w}}", BAR_STYLE.get(step.status, "dim")))
            row.append(("  ", ""))
        row.append((details, "dim"))
        lines.append(_trimmed(row))
    return lines


def _duration(step: StepRecord) -> str:
    return "-" if step.status == "skipped" else format_duration(step.duration)


def _trimmed(row: list[Segment]) -> list[Segment]:
    """The row without trailing blanks (a step with no details ends at its last column)."""
    while row and not row[-1][0].strip():
        row.pop()
    if row:
        text, style = row[-1]
        row[-1] = (text.rstrip(), style)
    return row
