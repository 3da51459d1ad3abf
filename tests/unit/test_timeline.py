"""The run as a picture (issue 20): the timeline's rules, its Markdown charts (Mermaid and
fixed-width text) compared to the expected text, the console's bars, and no secret in any.

The run (``timeline_run``): a background redirect with connection counters, a step retried
until it passed, a failed assertion over log lines; its events go through the engine's event
bus (which masks the secret) into every reporter.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from kdiag.engine.bus import EventBus
from kdiag.engine.events import (
    BackgroundFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepProgress,
    StepRef,
    StepStarted,
)
from kdiag.engine.masking import Masker
from kdiag.reports.console import ConsoleReporter
from kdiag.reports.html import HtmlReporter
from kdiag.reports.markdown import MarkdownReporter
from kdiag.reports.record import RunLog, RunRecord
from kdiag.reports.timeline import build, looked_for, stamp_seconds
from kdiag.reports.timeline_render import mermaid, mermaid_text
from tests.unit.timeline_run import SECRET, T0, events

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")

EXPECTED = Path(__file__).with_name("expected")
"""The expected charts, as files (they hold what a reader sees: look-alike colons and all)."""


def reports(tmp_path: Path) -> dict[str, str]:
    """Every report of the run, fed through a masking event bus, by name."""
    md, text_md = MarkdownReporter(str(tmp_path / "r.md")), MarkdownReporter(
        str(tmp_path / "t.md"), timeline="text")
    html = HtmlReporter(str(tmp_path / "r.html"))
    plain, terminal = io.StringIO(), io.StringIO()
    consoles = [ConsoleReporter(plain, env={}),
                ConsoleReporter(console=Console(force_terminal=True, file=terminal, width=120),
                                env={}, interactive=True)]
    reporters = [md, text_md, html, *consoles]
    bus = EventBus(reporters, Masker([SECRET]))
    for event in events():
        bus.emit(event)
    for reporter in reporters:
        reporter.close()
    return {"md": (tmp_path / "r.md").read_text(), "md-text": (tmp_path / "t.md").read_text(),
            "html": (tmp_path / "r.html").read_text(), "plain": plain.getvalue(),
            "terminal": ANSI.sub("", terminal.getvalue()), "raw terminal": terminal.getvalue()}


def section(markdown: str) -> str:
    return markdown[markdown.index("## Timeline"):markdown.index("## Parameters")]


def test_markdown_opens_with_the_mermaid_timeline(tmp_path: Path) -> None:
    md = reports(tmp_path)["md"]
    assert section(md) == (EXPECTED / "timeline-mermaid.md").read_text()
    assert md.index("## Timeline") < md.index("## Parameters") < md.index("## Steps")


def test_markdown_text_timeline(tmp_path: Path) -> None:
    assert section(reports(tmp_path)["md-text"]) == (EXPECTED / "timeline-text.md").read_text()


def test_no_report_holds_the_secret(tmp_path: Path) -> None:
    for name, text in reports(tmp_path).items():
        assert SECRET not in text, name
        assert "***" in text, name  # the masked value is there: the test shows what it hides
    html = reports(tmp_path)["html"]
    assert "order 42 paid with ***" in html and "first log line with" in html


def test_console_summary_has_the_same_columns_piped_and_on_a_terminal(tmp_path: Path) -> None:
    out = reports(tmp_path)
    plain = out["plain"].splitlines()
    terminal = out["terminal"].splitlines()
    head_plain = next(line for line in plain if line.startswith("  STEP"))
    head_terminal = next(line for line in terminal if line.startswith("  STEP"))
    assert head_plain.split() == ["STEP", "STATUS", "DURATION", "DETAILS"]
    assert head_terminal.split() == ["STEP", "STATUS", "DURATION", "TIMELINE", "3.00s",
                                     "DETAILS"]
    assert "\x1b" not in out["plain"] and "█" not in out["plain"]
    rows_plain = plain[plain.index(head_plain) + 1:plain.index(head_plain) + 5]
    rows_terminal = terminal[terminal.index(head_terminal) + 1:terminal.index(head_terminal) + 5]
    at = head_terminal.index("TIMELINE")
    assert at == head_plain.index("DETAILS")  # name, status and duration in the same places
    for mine, theirs in zip(rows_plain, rows_terminal, strict=True):
        assert mine[:at].rstrip() == theirs[:at].rstrip()
    bars = {row.split()[0]: row[at:] for row in rows_terminal}
    assert bars["redirect"].startswith("█░░░")  # the step, then its work up
    assert "▒" in bars["wait"] and "█" in bars["wait"]  # failed attempts, then the pass
    assert rows_terminal[3].split()[:3] == ["after", "skipped", "-"]
    assert rows_plain[3].split() == ["after", "skipped", "-", "not", "run"]


def test_steps_not_run_after_a_failure_are_listed_after_one_line(tmp_path: Path) -> None:
    lines = reports(tmp_path)["plain"].splitlines()
    i = lines.index("[SKIP] after")
    assert lines[i - 1] == "       so these steps did not run:"
    assert "an earlier step failed" not in reports(tmp_path)["plain"]


def test_timeline_rules() -> None:
    timeline = build(_record())
    bars = {b.name: b for b in timeline.bars}
    redirect = bars["redirect the api"]
    assert redirect.span is not None and redirect.span.end == 0.05
    assert redirect.background is not None and redirect.background.status == "up"
    assert round(redirect.background.end, 6) == 2.9  # stopped then, not when the run ended
    wait = bars["wait for the api"]
    assert [(round(a.start, 3), round(a.end, 3), a.status) for a in wait.attempts] == [
        (0.1, 0.3, "failed"), (0.8, 0.9, "failed"), (1.4, 1.7, "passed")]
    assert bars["after"].span is None  # skipped: no bar
    assert timeline.interval == 0.25
    assert [(i.start, i.counts) for i in timeline.intervals] == [
        (0.5, {"to_operator": 1}), (1.25, {"to_operator": 2, "to_app": 2}),
        (2.0, {"to_operator": 1, "rejected": 1})]
    kinds = [(m.kind, round(m.at, 3), m.status) for m in timeline.markers]
    assert kinds == [("log", 2.1, "passed"), ("log", 2.45, "failed"), ("failure", 2.7, "failed")]


def _record() -> RunRecord:
    log = RunLog()
    for event in events():
        log.handle(event)
    log.close()
    return log.runs[0]


def test_a_change_on_an_interval_boundary_counts_once() -> None:
    ref = StepRef(0, "r", "redirect", seq=1)
    log_events = [
        RunStarted("b", "b.yaml", {}, None, 1, T0),
        StepStarted(ref, 1, T0),
        StepFinished(ref, "passed", 0.01, 1),
        StepProgress(ref, T0 + 1.0, {"to_operator": 1}),  # exactly where an interval starts
        StepProgress(ref, T0 + 1.0, {"to_operator": 1}),  # (twice: samples at the same time)
        StepProgress(ref, T0 + 9.9, {"to_operator": 3}),  # and after the last one began
        RunFinished("passed", 0, 5.0, {}),
    ]
    log = RunLog()
    for event in log_events:
        log.handle(event)
    timeline = build(log.runs[0])
    assert timeline.interval == 0.5
    assert [(i.start, i.counts) for i in timeline.intervals] == [
        (1.0, {"to_operator": 1}), (4.5, {"to_operator": 2})]  # the last one gets what is after
    assert sum(i.counts["to_operator"] for i in timeline.intervals) == 3


def test_background_work_that_died_is_marked_where_it_died() -> None:
    ref = StepRef(0, "api redirect", "redirect", seq=1)
    log = RunLog()
    for event in [RunStarted("b", "b.yaml", {}, None, 1, T0), StepStarted(ref, 1, T0),
                  StepFinished(ref, "passed", 0.1, 1),
                  BackgroundFailed(ref, "manager gone", T0 + 1.5, environmental=True),
                  RunFinished("error", 3, 2.0, {}, "redirect 'api redirect': manager gone")]:
        log.handle(event)
    timeline = build(log.runs[0])
    bar = timeline.bars[0]
    assert bar.background is not None and bar.background.status == "error"
    assert bar.background.end == 1.5
    assert [m.kind for m in timeline.markers] == ["background"]  # not also at its start-up
    marks = timeline.markers
    assert marks[0].at == 1.5 and "manager gone" in marks[0].label
    assert "crit, active" in mermaid(timeline, "b")


def test_what_assertions_look_for_in_log_lines() -> None:
    assert looked_for("x.lines | selectattr('text', 'search', 'ERROR .*') | list") == [
        ("search", "ERROR .*")]
    assert looked_for('logs.lines | selectattr("text", "equalto", "ready") | list') == [
        ("equalto", "ready")]
    assert looked_for("'boom' not in around.text and 'ok' in around.text") == [
        ("in", "boom"), ("in", "ok")]
    assert looked_for("x.lines | selectattr('pod', 'equalto', 'api-0') | list") == []
    assert looked_for("result.status == 200") == []
    assert stamp_seconds("2023-11-14T22:13:22.450123456Z") == T0 + 2.450123456
    assert stamp_seconds("2023-11-14T23:13:20+01:00") == T0
    assert stamp_seconds("yesterday") is None


def test_mermaid_text_cannot_break_the_chart() -> None:
    name = "a: b; c #x; %%{init: {}}%% `d` <e>\nnext line"
    text = mermaid_text(name)
    assert not set(":;#%`<>{}\n") & set(text)
    assert text.startswith("a\u2236 b, c \u266fx")
    assert len(mermaid_text("x" * 500)) == 80


def test_a_run_where_nothing_ran_draws_no_chart(tmp_path: Path) -> None:
    md = MarkdownReporter(str(tmp_path / "r.md"))
    md.handle(RunStarted("b", "b.yaml", {}, None, 1, T0))
    md.handle(StepFinished(StepRef(0, "s", "note", seq=1), "skipped", 0.0, 0, "when was false"))
    md.handle(RunFinished("passed", 0, 0.1, {}))
    md.close()
    assert "## Timeline" not in (tmp_path / "r.md").read_text()
