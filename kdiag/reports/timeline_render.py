"""Drawing a :class:`~kdiag.reports.timeline.Timeline` as text: a Mermaid ``gantt`` chart (code
hosts render it in Markdown), a fixed-width chart (for where Mermaid is not rendered), and the
console's one-line bars."""

from __future__ import annotations

import math

from kdiag.reports.text import format_duration
from kdiag.reports.timeline import Bar, Timeline

_MERMAID_TAGS = {"passed": "done", "failed": "crit", "error": "crit", "ignored": "done",
                 "incomplete": "active", "running": "active"}
_MARK = {"passed": "", "failed": " ✘", "error": " ✘", "ignored": " (ignored)",
         "incomplete": " (did not finish)", "running": " (did not finish)"}
# Characters Mermaid reads as syntax in a task's or title's text: ':' ends the name, '#'
# starts an entity, ';' ends a statement, '%%' a comment or directive.
# They become look-alikes (a ratio sign, a sharp, a fullwidth percent, angle quotes).
_MERMAID_UNSAFE = str.maketrans({":": "\u2236", "#": "\u266f", ";": ",", "%": "\uff05",
                                 "`": "'", "{": "(", "}": ")", "<": "\u2039", ">": "\u203a"})


def mermaid_text(text: str, width: int = 80) -> str:
    """``text`` as a Mermaid task name or title: one line, nothing Mermaid would parse."""
    text = " ".join(text.split()).translate(_MERMAID_UNSAFE)
    return text if len(text) <= width else text[: width - 1] + "…"


def mermaid(timeline: Timeline, title: str) -> str:
    """A Mermaid ``gantt`` chart: one task per step that ran (a background step's lasts while
    its work was up), milestones for the markers, and a section per step with counters."""
    t0 = timeline.started_at or 0.0

    def ms(t: float) -> int:
        return round((t0 + t) * 1000)

    def task(name: str, tags: list[str], start: float, end: float) -> str:
        first, last = ms(start), max(ms(end), ms(start) + 1)
        return f"    {mermaid_text(name)} :{', '.join([*tags, str(first), str(last)])}"

    axis = "%H:%M:%S" if timeline.duration >= 30 else "%M:%S.%L"
    out = ["gantt", f"    title {mermaid_text(title, 120)}", "    dateFormat x",
           f"    axisFormat {axis}", "    section Steps"]
    for bar in timeline.drawn:
        assert bar.span is not None
        tags = [_MERMAID_TAGS.get(bar.status, "active")]
        end, note = bar.span.end, _MARK.get(bar.status, "")
        if bar.background is not None:
            end = max(end, bar.background.end)
            tags = ["active"] if bar.background.status == "up" else ["crit", "active"]
            note = " (background)" if bar.background.status == "up" else \
                f" (background, {bar.background.status})"
        if len(bar.attempts) > 1:
            failed = sum(1 for a in bar.attempts if a.status != "passed")
            note += f" ({len(bar.attempts)} attempts, {failed} failed)"
        out.append(task(f"{bar.number}. {bar.name}{note}", tags, bar.span.start, end))
    if timeline.markers:
        out.append("    section Events")
        for marker in timeline.markers:
            tags = ["milestone", *(["crit"] if marker.status != "passed" else [])]
            out.append(task(f"{_SYMBOL[marker.kind]} {marker.label}", tags, marker.at, marker.at))
    for bar in timeline.drawn:
        counted = timeline.counted(bar.number)
        if counted:
            title = f"per {format_duration(timeline.interval)} · {bar.number}. {bar.name}"
            out.append(f"    section {mermaid_text(title, 60)}")
            out.extend(task(i.label, ["active"], i.start, i.end) for i in counted)
    return "\n".join(out) + "\n"


_SYMBOL = {"failure": "✘", "background": "!", "log": "◆"}


def _column(t: float, scale: float, width: int) -> int:
    return min(width - 1, max(0, int(t / scale)))


def _cells(bar: Bar, scale: float, width: int, ran: str = "█", up: str = "░") -> list[str]:
    """The bar's characters across ``width`` columns of ``scale`` seconds each."""
    cells = [" "] * width
    if bar.span is None:
        return cells
    if bar.background is not None:
        for c in range(_column(bar.background.start, scale, width),
                       _column(bar.background.end, scale, width) + 1):
            cells[c] = up
    parts = bar.attempts or (bar.span,)
    for part in parts:
        first = _column(part.start, scale, width)
        last = max(first, math.ceil(part.end / scale) - 1) if part.end > part.start else first
        for c in range(first, min(last, width - 1) + 1):
            cells[c] = ran if part.status in ("passed", "running", "incomplete") else "▒"
    return cells


def text_chart(timeline: Timeline, width: int = 60) -> str:
    """The timeline as fixed-width text (for Markdown where Mermaid is not rendered)."""
    if timeline.started_at is None:
        return "(no step ran)\n"
    scale = max(timeline.duration, 0.001) / width
    names = [f"{b.number:>3} {'  ' * b.depth}{b.name}" for b in timeline.bars]
    name_w = min(max((len(n) for n in names), default=0), 40)
    out = [f"0 to {format_duration(timeline.duration)}, one column = {format_duration(scale)}",
           "█ ran  ▒ failed (a step, an attempt)  ░ background work up  ✘ failed",
           "! background work died  ◆ the first log line an assertion looked for", "",
           f"{'':<{name_w}} {_axis(timeline.duration, width)}"]
    for bar, name in zip(timeline.bars, names, strict=True):
        cells = _cells(bar, scale, width)
        for marker in [m for m in timeline.markers if m.step == bar.number]:
            cells[_column(marker.at, scale, width)] = _SYMBOL[marker.kind]
        shown = name if len(name) <= name_w else name[: name_w - 1] + "…"
        status = bar.status if bar.span is not None else "not run"
        out.append(f"{shown:<{name_w}} |{''.join(cells)}| {status}".rstrip())
    if timeline.markers:
        out += ["", "events:"]
        out += [f"  {format_duration(m.at):>7} {_SYMBOL[m.kind]} {m.label}"
                for m in timeline.markers]
    if timeline.intervals:
        out += ["", f"counters per {format_duration(timeline.interval)}:"]
        out += [f"  {format_duration(i.start):>7} to {format_duration(i.end):<7} "
                f"step {i.step}: {i.label}" for i in timeline.intervals]
    return "\n".join(out) + "\n"


def _axis(duration: float, width: int) -> str:
    """`` 0s        1s        2s`` over ``width`` columns (labels where they fit)."""
    scale = max(duration, 0.001) / width
    step = tick_step(duration)
    cells = [" "] * (width + 2)
    t = 0.0
    while t <= duration + 1e-9:
        label = _short(t)
        col = 1 + int(t / scale)
        if col + len(label) <= len(cells) and all(c == " " for c in cells[max(0, col - 1):col + len(label)]):
            cells[col:col + len(label)] = list(label)
        t += step
    return "".join(cells).rstrip()


def tick_step(duration: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if duration / step <= 6:
            return float(step)
    return 7200.0


def _short(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    return format_duration(seconds)


def console_bar(bar: Bar, timeline: Timeline, width: int) -> str:
    """One step's bar in ``width`` characters for the console's summary."""
    scale = max(timeline.duration, 0.001) / width
    return "".join(_cells(bar, scale, width)).rstrip()

