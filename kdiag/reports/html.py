"""``--report html=PATH``: one self-contained HTML file a browser shows offline.

The run's status, its timeline (an inline SVG, see :mod:`kdiag.reports.timeline_svg`), then
one folded section per step (open for the steps with a problem): its message, assertions with
their values, attempts, notes, links to its artifacts (relative to the report's folder), its
result and the tail of its output. Styles are inline; there is no script and nothing is
fetched. Everything shown comes from the run's events, so secrets are masked as everywhere.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote

from kdiag.reports.record import FileReporter, RunRecord
from kdiag.reports.steprecord import StepRecord
from kdiag.reports.text import format_duration, jsonable, readable, tail_lines, value_text
from kdiag.reports.timeline import Timeline, build
from kdiag.reports.timeline_svg import CSS as TIMELINE_CSS
from kdiag.reports.timeline_svg import svg

OUTPUT_LINES = 300
"""Lines of a step's output shown (its end); the artifacts hold all of it."""
MAX_RESULT_CHARS = 20000


class HtmlReporter(FileReporter):
    """Writes the HTML report at close."""

    kind = "HTML"

    def __init__(self, path: str, *, output_lines: int = OUTPUT_LINES,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(path, clock=clock)
        self.output_lines = output_lines

    def render(self) -> str:
        """The HTML document."""
        runs = self.log.runs or [RunRecord()]
        base = os.path.dirname(os.path.abspath(self.path))
        title = runs[0].runbook or runs[0].file or "run"
        body = "\n<hr>\n".join(render_run(r, base, self.output_lines) for r in runs)
        return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f"<title>kdiag report: {escape(title)}</title>\n<style>{CSS}{TIMELINE_CSS}"
                f"</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def render_run(run: RunRecord, base: str, output_lines: int = OUTPUT_LINES) -> str:
    """One run's part of the document."""
    timeline = build(run)
    out = [f'<header><h1>kdiag report: {escape(run.runbook or run.file or "run")}</h1>',
           f'<p class="verdict {escape(run.status)}">{_verdict(run)}</p>']
    if run.message:
        out.append(f'<p class="message">{escape(readable(run.message))}</p>')
    out.append(_facts(run) + "</header>")
    chart = svg(timeline)
    if chart:
        out.append(f'<section id="timeline"><h2>Timeline</h2>{chart}{_legend(timeline)}'
                   "</section>")
    out.append('<section id="steps"><h2>Steps</h2>')
    out.extend(_step(s, base, output_lines) for s in run.steps)
    if not run.steps:
        out.append("<p><em>no steps ran</em></p>")
    out.append("</section>")
    notes = [(s.qualified_name, n) for s in run.steps for n in s.notes]
    notes += [(n.source, n.message) for n in run.notes]
    if notes:
        out.append('<section id="notes"><h2>Notes</h2><ul>')
        out.extend(f"<li><b>{escape(source)}</b>: {_text(message)}</li>"
                   for source, message in notes)
        out.append("</ul></section>")
    if run.params:
        out.append('<section id="params"><h2>Parameters</h2><table>')
        out.extend(f"<tr><th>{escape(str(k))}</th><td><code>{_text(value_text(v))}</code></td></tr>"
                   for k, v in run.params.items())
        out.append("</table></section>")
    return "\n".join(out)


def _verdict(run: RunRecord) -> str:
    totals = run.totals
    counts = ", ".join(f"{totals[k]} {k}" for k in totals if k != "steps" and totals[k])
    parts = [f"<b>{escape(run.status.upper())}</b>"]
    if run.exit_code is not None:
        parts.append(f"exit code {run.exit_code}")
    parts += [escape(counts or "no steps"), escape(format_duration(run.duration))]
    return " · ".join(parts)


def _facts(run: RunRecord) -> str:
    facts = [("Runbook file", run.file), ("Target", run.target or "")]
    if run.started_at is not None:
        facts.append(("Started", datetime.fromtimestamp(run.started_at, tz=UTC)
                      .strftime("%Y-%m-%d %H:%M:%S UTC")))
    if run.dry_run:
        facts.append(("Dry run", "yes"))
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>"
                            for k, v in facts if v) + "</dl>"


def _legend(timeline: Timeline) -> str:
    items = [("bar passed", "passed"), ("bar failed", "failed or error"),
             ("attempt", "a failed attempt"), ("background", "background work up")]
    if timeline.markers:
        items.append(("marker", "a failure, a background death, or (blue) the first log line "
                                "an assertion looked for"))
    if timeline.intervals:
        items.append(("interval", f"counters per {format_duration(timeline.interval)} "
                                  "(hover: what went where)"))
    start = ""
    if timeline.started_at is not None:
        start = time.strftime("%H:%M:%S", time.localtime(timeline.started_at))
    return ('<p class="legend">' + "".join(f'<span class="swatch {c}"></span>{escape(t)} '
                                          for c, t in items)
            + (f"· 0s is {escape(start)}" if start else "") + "</p>")


def _step(step: StepRecord, base: str, output_lines: int) -> str:
    problem = step.has_problem or step.status == "running"
    message = step.summary_message()
    summary = (f'<span class="num">{step.number}.</span> '
               f'<span class="name">{escape(step.qualified_name)}</span> '
               f'<span class="kind">{escape(step.ref.kind)}'
               f'{" (finally)" if step.ref.phase == "finally" else ""}</span> '
               f'<span class="badge {escape(step.status)}">{escape(step.status)}</span> '
               + (f'<span class="dur">{escape(format_duration(step.duration))}</span>'
                  if step.status != "skipped" else "")
               + (f' <span class="attempts">{_attempts(step)}</span>' if step.attempts > 1
                  else "")
               + (f' <span class="msg">{escape(_one_line(message))}</span>' if message else ""))
    parts = [f'<details class="step {escape(step.status)}" id="step-{step.number}"'
             f'{" open" if problem else ""}><summary>{summary}</summary><div class="body">']
    if message and ("\n" in message or len(message) > 100):
        parts.append(f"<pre class=\"message\">{_text(message)}</pre>")
    if step.pod_lines:  # a step that ran on every pod: one line each
        parts.append("<h4>Pods</h4><ul class=\"pods\">"
                     + "".join(f"<li>{_text(line)}</li>" for line in step.pod_lines) + "</ul>")
    if step.assertions:
        parts.append(_assertions(step))
    if len(step.attempt_log) > 1:
        parts.append("<h4>Attempts</h4><ol>" + "".join(
            f"<li>{_text(a.line().partition(': ')[2])}</li>" for a in step.attempt_log)
            + "</ol>")
    if step.background_failure:
        failure = step.background_failure
        parts.append(f'<p class="bgfail">background work failed at {escape(failure["time"])}: '
                     f"{_text(failure['cause'])}</p>")
    if step.notes:
        parts.append("<h4>Notes</h4><ul>" + "".join(f"<li>{_text(n)}</li>" for n in step.notes)
                     + "</ul>")
    files = _files(step)
    if files:
        parts.append("<h4>Artifacts</h4><ul>" + "".join(
            f'<li><a href="{_href(a, base)}">{escape(a)}</a></li>' for a in files) + "</ul>")
    if step.progress:
        counts = ", ".join(f"{k} {v}" for k, v in step.progress[-1][1].items())
        parts.append(f"<h4>Counters when its work ended</h4><p>{escape(counts)}</p>")
    result = _result(step)
    if result:
        parts.append("<details class=\"result\"><summary>result (as the step ended)</summary>"
                     f"<pre>{_text(result)}</pre></details>")
    lines, cut = tail_lines(readable(step.output), output_lines)
    if lines:
        note = f" (last {len(lines)} of {len(lines) + cut} lines)" if cut else ""
        parts.append(f"<h4>Output{escape(note)}</h4><pre class=\"output\">"
                     f"{_text(chr(10).join(lines))}</pre>")
    parts.append("</div></details>")
    return "".join(parts)


FILE_FIELDS = ("stdout_file", "stderr_file", "file", "local")
"""Result fields naming a file a step wrote (its output, a capture, a download): linked too."""


def _files(step: StepRecord) -> list[str]:
    """The step's artifacts and the files its result names (those that exist)."""
    named = [step.result.get(k) for k in FILE_FIELDS]
    found = [*step.artifacts, *(f for f in named if isinstance(f, str) and f
                                and os.path.isfile(f))]
    return list(dict.fromkeys(found))


def _attempts(step: StepRecord) -> str:
    failed = len(step.failed_attempts)
    return f"{step.attempts} attempts" + (f", {failed} failed" if failed else "")


def _assertions(step: StepRecord) -> str:
    rows = []
    for a in step.assertions:
        values = "".join(f"<div><code>{_text(k)}</code> = <code>{_text(v)}</code></div>"
                         for k, v in a.values.items())
        mark = '<span class="ok">✔</span>' if a.passed else '<span class="no">✘</span>'
        rows.append(f"<tr><td>{mark}</td><td><code>{_text(a.expression)}</code>"
                    + (f"<div>{_text(a.message)}</div>" if a.message else "")
                    + f"</td><td>{values}</td></tr>")
    return "<h4>Assertions</h4><table class=\"asserts\">" + "".join(rows) + "</table>"


def _result(step: StepRecord) -> str:
    shown = {k: v for k, v in step.result.items()
             if k not in ("ok", "failed", "skipped", "message", "duration", "attempts",
                          "artifacts", "stdout", "stderr", "text")}
    if not shown:
        return ""
    text = json.dumps(jsonable(shown), indent=2, ensure_ascii=False)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"\n... ({len(text) - MAX_RESULT_CHARS} more characters " \
                                          "in the JSON report)"
    return text


def _href(path: str, base: str) -> str:
    """A link to an artifact from the report's folder (relative, so the folder can move)."""
    try:
        relative = os.path.relpath(os.path.abspath(path), base)
    except ValueError:
        relative = os.path.abspath(path)
    return escape(quote(relative.replace(os.sep, "/")), quote=True)


def _text(text: str) -> str:
    return escape(readable(text))


def _one_line(text: str, width: int = 160) -> str:
    line = " ".join(readable(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       margin: 0 auto; padding: 24px 32px; max-width: 1180px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid #d1d9e0; padding-bottom: 4px; }
h4 { margin: 12px 0 4px; font-size: 13px; color: #59636e; }
.verdict { font-size: 15px; margin: 4px 0; }
.verdict.passed b { color: #1a7f37; } .verdict.failed b, .verdict.invalid b { color: #cf222e; }
.verdict.error b, .verdict.interrupted b, .verdict.incomplete b { color: #8250df; }
p.message { background: #fff8c5; border-left: 3px solid #d4a72c; padding: 6px 10px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; margin: 8px 0; }
dt { color: #59636e; } dd { margin: 0; font-family: ui-monospace, monospace; font-size: 13px; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
pre { background: #f6f8fa; border: 1px solid #d1d9e0; border-radius: 6px; padding: 8px 10px;
      overflow-x: auto; white-space: pre-wrap; word-break: break-word; margin: 4px 0; }
details.step { border: 1px solid #d1d9e0; border-radius: 6px; margin: 6px 0; }
details.step > summary { cursor: pointer; padding: 6px 10px; list-style-position: inside; }
details.step[open] > summary { border-bottom: 1px solid #d1d9e0; background: #f6f8fa; }
details.step.failed, details.step.error { border-color: #ff8182; }
details.step .body { padding: 4px 14px 10px; }
.num { color: #59636e; } .name { font-weight: 600; } .kind, .dur, .attempts { color: #59636e; }
.msg { color: #59636e; font-style: italic; }
.badge { border-radius: 10px; padding: 0 8px; font-size: 12px; color: #fff; background: #6e7781; }
.badge.passed { background: #1a7f37; } .badge.failed, .badge.error { background: #cf222e; }
.badge.ignored { background: #9a6700; } .badge.skipped { background: #afb8c1; }
.badge.incomplete, .badge.running { background: #8250df; }
table { border-collapse: collapse; } td, th { padding: 3px 8px; vertical-align: top;
  border-bottom: 1px solid #eaeef2; text-align: left; }
.ok { color: #1a7f37; } .no { color: #cf222e; font-weight: 700; }
.bgfail { color: #cf222e; }
details.result > summary { cursor: pointer; color: #59636e; }
.legend { color: #59636e; font-size: 12.5px; }
.swatch { display: inline-block; width: 18px; height: 10px; margin: 0 4px 0 10px;
          vertical-align: middle; border-radius: 2px; }
.swatch.bar.passed { background: #2da44e; } .swatch.bar.failed { background: #d9363e; }
.swatch.attempt { background: repeating-linear-gradient(45deg, #d9363e 0 3px, #fff 3px 6px); }
.swatch.background { background: repeating-linear-gradient(45deg, #8fb8e8 0 4px, #fff 4px 8px);
                     border: 1px solid #4a7fc1; }
.swatch.marker { background: #d9363e; width: 10px; transform: rotate(45deg); }
.swatch.interval { background: #ddf4ff; border: 1px solid #54aeff; }
hr { margin: 40px 0; }
"""
