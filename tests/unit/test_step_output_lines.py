"""A step's stdout and stderr reach the reporters in whole lines: a line of one stream that
arrives in two chunks never has a line of the other put inside it (the report's output shows
them in one text), a line without end is shown after a short wait (a prompt), and a secret cut
between two chunks is still masked."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kdiag.engine.bus import EventBus
from kdiag.engine.context import PARTIAL_LINE_WAIT, RunScope, StepRuntime
from kdiag.engine.events import Event, StepOutput, StepRef

REF = StepRef(0, "shell", "shell", seq=1)


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, StepOutput))


def runtime(sink: Sink, secrets: tuple[str, ...] = ()) -> StepRuntime:
    bus = EventBus([sink])
    bus.masker.add_all(secrets)
    return StepRuntime(run=cast(RunScope, SimpleNamespace(bus=bus)), frame=cast(Any, None),
                       ref=REF, spec=cast(Any, SimpleNamespace(secret=False)), deadline=None)


def test_a_line_in_two_chunks_stays_whole_beside_the_other_stream() -> None:
    sink = Sink()
    step = runtime(sink)
    step.output("level: ", "stdout")
    step.output("stderr line\n", "stderr")
    step.output("verbose\n", "stdout")
    assert sink.text() == "stderr line\nlevel: verbose\n"
    assert [e.stream for e in sink.events if isinstance(e, StepOutput)] == ["stderr", "stdout"]


def test_a_masked_secret_cut_in_two_stays_in_its_line() -> None:
    secret = "tok-0123456789abcdef"
    sink = Sink()
    step = runtime(sink, (secret,))
    step.output("token: " + secret[:6], "stdout")
    step.output("stderr token " + secret + "\n", "stderr")
    step.output(secret[6:] + "\n", "stdout")
    assert sink.text() == "stderr token ***\ntoken: ***\n"


def test_a_line_without_end_is_shown_after_a_short_wait() -> None:
    sink = Sink()
    step = runtime(sink)
    step.output("Continue? [y/N] ", "stdout")
    assert sink.text() == ""  # waiting for the rest of the line
    deadline = time.monotonic() + 5
    while not sink.text() and time.monotonic() < deadline:
        time.sleep(PARTIAL_LINE_WAIT / 5)
    assert sink.text() == "Continue? [y/N] "
    step.output("y\n", "stdout")
    assert sink.text() == "Continue? [y/N] y\n"


def test_the_end_of_the_step_shows_what_is_held() -> None:
    sink = Sink()
    step = runtime(sink)
    step.output("no newline at the end", "stdout")
    step.flush()
    assert sink.text() == "no newline at the end"


def test_whole_lines_go_out_at_once_and_the_rest_waits_up_to_its_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kdiag.engine import context

    monkeypatch.setattr(context, "PARTIAL_LINE_WAIT", 60.0)  # no timer in this test
    sink = Sink()
    step = runtime(sink)
    lines = "x" * 40_000 + "\n"
    step.output(lines + "y" * 30_000, "stdout")
    assert sink.text() == lines  # the rest of a line, under the bound, waits
    step.output("z" * context.MAX_PARTIAL_LINE, "stdout")
    assert sink.text() == lines + "y" * 30_000 + "z" * context.MAX_PARTIAL_LINE  # over it: out
