"""What the reports say of a step, from its record: the failure message (the step's own, else
the first failed assertion's message, else the assertion itself), an attempt retried by the
user, and a long message cut to one line of the HTML report at its width."""

from __future__ import annotations

from pathlib import Path

from kdiag.engine.events import AttemptFinished, StepRef
from kdiag.reports.html import _one_line
from kdiag.reports.steprecord import AssertionRecord, AttemptRecord, StepRecord

REF = StepRef(0, "check", "http")


def test_the_summary_is_the_message_else_the_first_failed_assertion() -> None:
    record = StepRecord(REF, 1, status="failed", assertions=[
        AssertionRecord("a == 1", True),
        AssertionRecord("r.status == 200", False),
        AssertionRecord("r.ok", False, message="second")])
    assert record.summary_message() == "assertion failed: r.status == 200"
    record.assertions[1].message = "the API is down"
    assert record.summary_message() == "the API is down"
    record.message = "own message"
    assert record.summary_message() == "own message"


def test_an_attempt_retried_by_the_user_says_so() -> None:
    record = AttemptRecord.from_event(AttemptFinished(REF, 2, "failed", "refused", 0.5,
                                                      by_user=True))
    assert record == AttemptRecord(2, "failed", "refused", 0.5, by_user=True)
    assert record.line() == "attempt 2 (retried by the user): failed: refused"


def test_a_long_message_is_cut_to_its_width_with_an_ellipsis() -> None:
    assert _one_line("a  b\n c") == "a b c"
    assert _one_line("x" * 160) == "x" * 160
    cut = _one_line("y" * 200)
    assert (len(cut), cut) == (160, "y" * 159 + "…")
    assert _one_line("z" * 11, width=10) == "z" * 9 + "…"


def test_the_markdown_report_keeps_the_last_notes_text_whole(write, tmp_path: Path) -> None:
    """The report's end is trimmed of blank lines only, not of what the last line says."""
    from kdiag.cli.main import main

    path = write("steps:\n  - {name: last, note: 'limit is 10 MiB; saw XX'}\n")
    report = tmp_path / "r.md"
    assert main(["run", str(path), "--report", f"md={report}", "--quiet"]) == 0
    assert report.read_text().endswith("- **last**: limit is 10 MiB; saw XX\n")
