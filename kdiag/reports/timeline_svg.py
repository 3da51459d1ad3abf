"""The timeline as an inline SVG picture for the HTML report (no script, no fonts to fetch).

A row per step: its name, a bar (``rect.bar``, one per step that ran; a retried step's attempts
are parts of it, a failed attempt hatched), the span its background work was up
(``rect.background``), markers (``.marker``) at failures, background deaths and the first log
line an assertion looked for, and under a step with counters a row of its intervals
(``rect.interval``, labelled with what went where). Every element has a ``<title>``: hovering
shows its times.
"""

from __future__ import annotations

from html import escape

from kdiag.reports.text import format_duration
from kdiag.reports.timeline import Bar, Timeline
from kdiag.reports.timeline_render import tick_step

WIDTH = 1100
LABEL = 330
"""Width of the names' column."""
RIGHT = 16
ROW = 24
TOP = 34
"""Height of the axis above the rows."""
NAME_CHARS = 44


def _x(t: float, timeline: Timeline) -> float:
    span = max(timeline.duration, 0.001)
    return LABEL + (WIDTH - LABEL - RIGHT) * max(0.0, min(t, span)) / span


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def _name(bar: Bar) -> str:
    name = f"{bar.number}. {bar.name}"
    return name if len(name) <= NAME_CHARS - 2 * bar.depth else \
        name[: NAME_CHARS - 2 * bar.depth - 1] + "…"


def svg(timeline: Timeline) -> str:
    """The ``<svg>`` element (empty ``""`` when no step ran)."""
    if timeline.started_at is None or not timeline.drawn:
        return ""
    rows: list[str] = []
    y = TOP
    for bar in timeline.bars:
        rows.append(_row(bar, timeline, y))
        y += ROW
        counted = timeline.counted(bar.number)
        if counted:
            rows.append(_counts_row(bar, timeline, y))
            y += ROW
    height = y + 8
    body = "".join([_axis(timeline, height), *rows])
    return (f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">'
            f"<defs>{_PATTERNS}</defs>{body}</svg>")


_PATTERNS = (
    '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="3" height="6" fill="#d9363e"/></pattern>'
    '<pattern id="up" width="8" height="8" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="4" height="8" fill="#8fb8e8"/></pattern>')


def _axis(timeline: Timeline, height: int) -> str:
    step = tick_step(timeline.duration)
    parts = [f'<g class="axis"><line x1="{LABEL}" y1="{TOP - 6}" x2="{WIDTH - RIGHT}" '
             f'y2="{TOP - 6}"/>']
    t = 0.0
    while t <= timeline.duration + 1e-9:
        x = _x(t, timeline)
        parts.append(f'<line class="tick" x1="{x:.1f}" y1="{TOP - 10}" x2="{x:.1f}" '
                     f'y2="{height - 6}"/><text x="{x:.1f}" y="{TOP - 14}">'
                     f"{escape(_label(t))}</text>")
        t += step
    parts.append("</g>")
    return "".join(parts)


def _label(t: float) -> str:
    return f"{t:g}s" if t < 60 else format_duration(t)


def _row(bar: Bar, timeline: Timeline, y: int) -> str:
    out = [f'<g class="row {escape(bar.status)}" data-step="{bar.number}">',
           f'<text class="name" x="{8 + 14 * bar.depth}" y="{y + 16}">'
           f"{_title(bar.name)}{escape(_name(bar))}</text>"]
    if bar.span is None:
        out.append(f'<text class="not-run" x="{LABEL + 4}" y="{y + 16}">not run</text></g>')
        return "".join(out)
    if bar.background is not None:
        x1, x2 = _x(bar.background.start, timeline), _x(bar.background.end, timeline)
        what = "up" if bar.background.status == "up" else bar.background.status
        out.append(f'<rect class="background {escape(bar.background.status)}" x="{x1:.1f}" '
                   f'y="{y + 7}" width="{max(x2 - x1, 1):.1f}" height="10">'
                   + _title(f"{bar.name}: background work {what} "
                            f"{_range(bar.background.start, bar.background.end)}") + "</rect>")
    x1, x2 = _x(bar.span.start, timeline), _x(bar.span.end, timeline)
    attempts = f", {len(bar.attempts)} attempts" if bar.attempts else ""
    out.append(f'<rect class="bar {escape(bar.status)}" x="{x1:.1f}" y="{y + 4}" '
               f'width="{max(x2 - x1, 2):.1f}" height="16" rx="2">'
               + _title(f"{bar.name}: {bar.status} {_range(bar.span.start, bar.span.end)}"
                        f"{attempts}") + "</rect>")
    for number, part in enumerate(bar.attempts, 1):
        if part.status == "passed":
            continue
        a1, a2 = _x(part.start, timeline), _x(part.end, timeline)
        out.append(f'<rect class="attempt failed" x="{a1:.1f}" y="{y + 4}" '
                   f'width="{max(a2 - a1, 1.5):.1f}" height="16">'
                   + _title(f"attempt {number}: {part.status} {_range(part.start, part.end)}")
                   + "</rect>")
    for marker in (m for m in timeline.markers if m.step == bar.number):
        x = _x(marker.at, timeline)
        out.append(f'<g class="marker {escape(marker.kind)}">'
                   f'<path d="M{x:.1f} {y + 1} l6 11 l-6 11 l-6 -11 z"/>'
                   + _title(f"{format_duration(marker.at)}: {marker.label}") + "</g>")
    out.append("</g>")
    return "".join(out)


def _counts_row(bar: Bar, timeline: Timeline, y: int) -> str:
    what = "connections per" if bar.kind == "redirect" else "per"
    out = [f'<g class="counts" data-step="{bar.number}"><text class="name counter" '
           f'x="{22 + 14 * bar.depth}" y="{y + 16}">{what} '
           f"{escape(_label(timeline.interval))}</text>"]
    for interval in timeline.counted(bar.number):
        x1, x2 = _x(interval.start, timeline), _x(interval.end, timeline)
        out.append(f'<g class="interval"><rect class="interval" x="{x1 + 1:.1f}" y="{y + 3}" '
                   f'width="{max(x2 - x1 - 2, 2):.1f}" height="18" rx="3">'
                   + _title(f"{_range(interval.start, interval.end)}: {interval.label}")
                   + f'</rect><text x="{(x1 + x2) / 2:.1f}" y="{y + 16}">'
                   f"{escape(_fitting(interval.counts, x2 - x1 - 6))}</text></g>")
    out.append("</g>")
    return "".join(out)


_SHORT = {"to_operator": "\N{RIGHTWARDS ARROW}op", "to_app": "\N{RIGHTWARDS ARROW}app",
          "rejected": "rej", "dropped": "drop"}
CHAR_WIDTH = 6.2
"""Width of a character at the counters' 11px font (roughly)."""


def _fitting(counts: dict[str, int], width: float) -> str:
    """What went where in ``width`` pixels: ``1 to operator``, ``1→op 2→app``, or a total."""
    words = {"to_operator": "to operator", "to_app": "to app"}
    for text in (", ".join(f"{n} {words.get(k, k)}" for k, n in counts.items()),
                 " ".join(f"{n}{_SHORT.get(k, ' ' + k)}" for k, n in counts.items())):
        if len(text) * CHAR_WIDTH <= width:
            return text
    return str(sum(counts.values()))


def _range(start: float, end: float) -> str:
    return f"{format_duration(start)} to {format_duration(end)}"


CSS = """
svg.timeline { font: 12px system-ui, sans-serif; max-width: 100%; height: auto; }
svg.timeline .axis line { stroke: #c8ccd2; }
svg.timeline .axis line.tick { stroke: #eceef1; }
svg.timeline .axis text { fill: #6b7280; text-anchor: middle; }
svg.timeline text.name { fill: #1f2328; }
svg.timeline text.counter { fill: #6b7280; font-style: italic; }
svg.timeline text.not-run { fill: #9ca3af; font-style: italic; }
svg.timeline .row.skipped text.name { fill: #9ca3af; }
svg.timeline rect.bar { fill: #2da44e; }
svg.timeline rect.bar.failed, svg.timeline rect.bar.error { fill: #d9363e; }
svg.timeline rect.bar.ignored { fill: #d4a72c; }
svg.timeline rect.bar.incomplete, svg.timeline rect.bar.running { fill: #8250df; }
svg.timeline rect.attempt.failed { fill: url(#hatch); }
svg.timeline rect.background { fill: url(#up); stroke: #4a7fc1; stroke-width: 1; }
svg.timeline rect.background.failed, svg.timeline rect.background.error { stroke: #d9363e; }
svg.timeline .marker path { fill: #d9363e; stroke: #fff; stroke-width: 1; }
svg.timeline .marker.log path { fill: #0969da; }
svg.timeline .marker.background path { fill: #bc4c00; }
svg.timeline rect.interval { fill: #ddf4ff; stroke: #54aeff; }
svg.timeline .interval text { fill: #0550ae; text-anchor: middle; font-size: 11px; }
"""
