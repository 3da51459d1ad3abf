"""The run as a picture: what ran when, from a run's record (so from its masked events).

One :class:`Bar` per step that ran (its attempts, and the span its background work was up),
:class:`Marker` s for failures, background work that died and the first log line an assertion
looked for, and a step's counters per :class:`Interval` (a redirect's connections: where they
went, per interval of the run). The Markdown, HTML and console reports draw it
(:mod:`kdiag.reports.timeline_render`, :mod:`kdiag.reports.html`).

Times are seconds from the run's start. Rules a reader can check:

- a step's bar runs from its first attempt's start for its reported duration; each attempt of a
  retried step is a part of it;
- a background step's work is up from the end of its step until it was stopped (a ``stop``
  step, or the run's end), or until it died;
- a failed (errored, ignored) step is marked at its end, where its assertions were evaluated;
- counters (``StepProgress``) are cumulative; an interval shows how much each grew in it. A
  redirect counts a connection to the operator when it opens, one to the app when it closes;
- a step whose result holds log ``lines`` (``logs``) and whose assertions look for text in
  them (``selectattr('text', 'search'|'match'|'equalto', STRING)``, ``STRING in X.text``,
  ``STRING not in X.text``) gets a marker at the first line (by its time stamp) holding any
  such STRING (one marker per such assertion): when what the assertion was about happened,
  next to when it was evaluated.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kdiag.reports.record import RunRecord
from kdiag.reports.steprecord import StepRecord
from kdiag.reports.text import first_line

NICE_STEPS = (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
              7200, 10800, 21600, 43200, 86400)
"""Interval lengths (seconds) counters are shown per: the first giving at most
:data:`MAX_INTERVALS` intervals."""
MAX_INTERVALS = 12
INTERVAL_KEYS = ("to_operator", "to_app", "rejected", "dropped")
"""Counters shown per interval, in this order (a redirect's); other steps' counters follow."""
LEVEL_KEYS = frozenset({"open", "closed", "bytes_in", "bytes_out"})
"""Counters that are not counts of new things (a level, bytes): not shown per interval."""
MAX_LOG_MARKERS = 5
"""Markers of log lines per step (one per assertion that looks for text, the earliest)."""


@dataclass(frozen=True)
class Span:
    """From ``start`` to ``end`` (seconds since the run's start), with how it ended."""

    start: float
    end: float
    status: str


@dataclass(frozen=True)
class Bar:
    """One step: ``span`` None when it did not run (skipped)."""

    number: int
    name: str
    depth: int
    kind: str
    status: str
    span: Span | None
    attempts: tuple[Span, ...] = ()
    """Each attempt, when there was more than one."""
    background: Span | None = None
    """The work the step kept up (``status``: ``up``, or how it died)."""


@dataclass(frozen=True)
class Marker:
    """A moment worth seeing: ``kind`` is ``failure``, ``background`` (work that died) or
    ``log`` (the first log line an assertion looked for; ``status`` says whether that
    assertion held: ``passed`` or ``failed``)."""

    at: float
    kind: str
    label: str
    step: int
    status: str = ""


@dataclass(frozen=True)
class Interval:
    """How much a step's counters grew from ``start`` to ``end``."""

    step: int
    start: float
    end: float
    counts: dict[str, int]

    @property
    def label(self) -> str:
        """``3 to operator, 1020 to app``."""
        words = {"to_operator": "to operator", "to_app": "to app"}
        return ", ".join(f"{n} {words.get(k, k.replace('_', ' '))}"
                         for k, n in self.counts.items())


@dataclass
class Timeline:
    """What happened when in one run (see the module docstring)."""

    started_at: float | None
    """The run's start, seconds since the epoch (None: no step has a time)."""
    duration: float
    bars: list[Bar] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    interval: float = 1.0

    @property
    def drawn(self) -> list[Bar]:
        """The bars of steps that ran."""
        return [b for b in self.bars if b.span is not None]

    def counted(self, step: int) -> list[Interval]:
        """The intervals of step number ``step``."""
        return [i for i in self.intervals if i.step == step]


def build(run: RunRecord) -> Timeline:
    """The timeline of ``run``."""
    starts = [s.started_at for s in run.steps if s.started_at is not None and _number(s.started_at)]
    t0 = run.started_at if _number(run.started_at) else (min(starts) if starts else None)
    if t0 is None:
        return Timeline(None, 0.0, [_bar(s, 0.0, 0.0) for s in run.steps])
    ends = [(s.started_at or t0) - t0 + (s.duration or 0.0) for s in run.steps if s.started_at]
    duration = max([run.duration or 0.0, *ends, 0.0])
    timeline = Timeline(t0, duration, interval=_interval(duration))
    for step in run.steps:
        bar = _bar(step, t0, duration)
        timeline.bars.append(bar)
        timeline.markers.extend(_markers(step, bar, t0, duration))
        timeline.intervals.extend(_intervals(step, t0, duration, timeline.interval))
    timeline.markers.sort(key=lambda m: m.at)
    return timeline


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _interval(duration: float) -> float:
    for step in NICE_STEPS:
        if duration / step <= MAX_INTERVALS:
            return float(step)
    return float(NICE_STEPS[-1])


def _bar(step: StepRecord, t0: float, end: float) -> Bar:
    name, depth = step.qualified_name, len(step.ref.path)
    if not _number(step.started_at) or step.status == "skipped":
        return Bar(step.number, name, depth, step.ref.kind, step.status, None)
    assert step.started_at is not None
    start = step.started_at - t0
    stop = start + step.duration if step.duration is not None and _number(step.duration) else end
    span = Span(start, max(start, stop), step.status)
    attempts: tuple[Span, ...] = ()
    if len(step.attempt_log) > 1:
        attempts = tuple(Span(at - t0, at - t0 + a.duration, a.status)
                         for at, a in zip(step.attempt_started_at, step.attempt_log, strict=False))
    return Bar(step.number, name, depth, step.ref.kind, step.status, span, attempts,
               _background(step, span.end, t0, end))


def _background(step: StepRecord, start: float, t0: float, end: float) -> Span | None:
    failure = step.background_failure
    stopped = step.background_stopped_at
    if failure is not None and _number(failure.get("at")):
        status = "ignored" if failure.get("ignored") else (
            "error" if failure.get("environmental") else "failed")
        return Span(start, max(start, failure["at"] - t0), status)
    if stopped is not None:
        return Span(start, max(start, min(stopped - t0, end)), "up")
    return None


def _markers(step: StepRecord, bar: Bar, t0: float, end: float) -> list[Marker]:
    found: list[Marker] = []
    if bar.span is not None and step.status in ("failed", "error", "ignored") \
            and not step.background_failure:  # (its work died later: marked where it did)
        label = f"{step.qualified_name}: {first_line(step.summary_message(), 160)}"
        found.append(Marker(bar.span.end, "failure", label, step.number, step.status))
    if bar.background is not None and bar.background.status != "up" and step.background_failure:
        label = f"{step.ref.kind} {step.qualified_name!r}: {step.background_failure['cause']}"
        found.append(Marker(bar.background.end, "background", first_line(label, 200),
                            step.number, bar.background.status))
    for at, pattern, text, held in first_matching_lines(step):
        found.append(Marker(min(max(at - t0, 0.0), end), "log",
                            first_line(f"first log line with '{pattern}': {text}", 200),
                            step.number, "passed" if held else "failed"))
    return found


def _intervals(step: StepRecord, t0: float, end: float, length: float) -> list[Interval]:
    if not step.progress:
        return []
    samples = sorted(((at - t0, counts) for at, counts in step.progress), key=lambda s: s[0])
    keys = [k for k in INTERVAL_KEYS if any(k in c for _a, c in samples)]
    keys += sorted({k for _a, c in samples for k in c} - set(keys) - LEVEL_KEYS)
    found = []
    count = max(1, math.ceil(end / length))
    for index in range(count):
        start, stop = index * length, min((index + 1) * length, end)
        last = index == count - 1  # the last one also gets what came after the end
        before = _before(samples, start)
        after = samples[-1][1] if last else _before(samples, stop)
        grew = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
        grew = {k: n for k, n in grew.items() if n > 0}
        if grew:
            found.append(Interval(step.number, start, stop, grew))
    return found


def _before(samples: list[tuple[float, dict[str, int]]], t: float) -> dict[str, int]:
    """The counters just before ``t`` (a change at ``t`` belongs to the interval from ``t``)."""
    current: dict[str, int] = {}
    for at, counts in samples:
        if at >= t:
            break
        current = counts
    return current


# -- the first log line an assertion looked for ------------------------------------------------

_STRING = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
_SELECT_TEXT = re.compile(r"""selectattr\(\s*['"]text['"]\s*,\s*['"](search|match|equalto|eq|==)"""
                          r"""['"]\s*,\s*""" + _STRING)
_IN_TEXT = re.compile(_STRING + r"""\s+(?:not\s+)?in\s+[\w.]*\btext\b""")
_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def looked_for(expression: str) -> list[tuple[str, str]]:
    """The texts an assertion looks for in log lines: ``(how, text)`` with ``how`` one of
    ``search``, ``match``, ``equalto`` (a whole line) or ``in`` (a substring)."""
    found = []
    for how, literal in _SELECT_TEXT.findall(expression):
        text = _literal(literal)
        if text is not None:
            found.append(("equalto" if how in ("eq", "==") else how, text))
    for literal in _IN_TEXT.findall(expression):
        text = _literal(literal)
        if text is not None:
            found.append(("in", text))
    return found


def _literal(source: str) -> str | None:
    try:
        value = ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) and value else None


def _matches(how: str, pattern: str, text: str) -> bool:
    if how in ("search", "match"):
        try:
            found = re.search(pattern, text) if how == "search" else re.match(pattern, text)
        except re.error:
            return pattern in text
        return found is not None
    return text == pattern if how == "equalto" else pattern in text


def first_matching_lines(step: StepRecord) -> list[tuple[float, str, str, bool]]:
    """For each of the step's assertions that looks for text in its log lines: when the
    first line holding it came (seconds since the epoch), what was looked for, the line
    (``[pod/container] text``) and whether the assertion held. At most
    :data:`MAX_LOG_MARKERS`, the earliest."""
    lines = step.result.get("lines") if isinstance(step.result, dict) else None
    if not isinstance(lines, list) or not step.assertions:
        return []
    timed = [(at, line) for line in lines if isinstance(line, dict)
             and isinstance(line.get("text"), str)
             and (at := stamp_seconds(str(line.get("time", "")))) is not None]
    timed.sort(key=lambda pair: pair[0])
    found = []
    for assertion in step.assertions:
        wanted = looked_for(assertion.expression)
        for at, line in timed if wanted else ():
            hit = next((p for how, p in wanted if _matches(how, p, line["text"])), None)
            if hit is not None:
                source = "/".join(str(line[k]) for k in ("pod", "container") if line.get(k))
                text = f"[{source}] {line['text']}" if source else line["text"]
                found.append((at, hit, text, assertion.passed))
                break
    return sorted(found)[:MAX_LOG_MARKERS]


def stamp_seconds(stamp: str) -> float | None:
    """An RFC 3339 time stamp (the kubelet's, nanoseconds and all) as seconds since the epoch."""
    m = _STAMP.match(stamp.strip())
    if m is None:
        return None
    zone = m[3] if m[3] and m[3] != "Z" else "+00:00"
    try:
        whole = datetime.fromisoformat(m[1] + zone).timestamp()
    except ValueError:
        return None
    return whole + (float("0" + m[2]) if m[2] else 0.0)
