"""A step's counters reach the reporters a few times a second, whatever the rate of changes,
and the last change always arrives (a timer sends it; so does the end of the step's work)."""

from __future__ import annotations

import math
import time
from typing import Any, cast

from kdiag.engine.bus import EventBus
from kdiag.engine.context import PROGRESS_INTERVAL, RunScope, StepRuntime
from kdiag.engine.events import Event, StepProgress, StepRef

REF = StepRef(0, "redirect", "redirect", seq=1)


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)


class Run:
    def __init__(self, sink: Sink) -> None:
        self.bus = EventBus([sink])


def runtime(sink: Sink) -> StepRuntime:
    return StepRuntime(run=cast(RunScope, Run(sink)), frame=cast(Any, None), ref=REF,
                       spec=cast(Any, None), deadline=None)


def sent(sink: Sink) -> list[dict[str, int]]:
    return [e.counts for e in sink.events if isinstance(e, StepProgress)]


def test_many_changes_few_events_the_last_one_sent() -> None:
    sink = Sink()
    step = runtime(sink)
    began = time.monotonic()
    for n in range(2000):
        step.progress({"to_operator": n})
    took = time.monotonic() - began
    assert len(sent(sink)) <= 1 + math.ceil(took / PROGRESS_INTERVAL)
    assert sent(sink)[0] == {"to_operator": 0}  # the first change goes at once
    deadline = time.monotonic() + 5
    while sent(sink)[-1] != {"to_operator": 1999} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent(sink)[-1] == {"to_operator": 1999}  # the timer sent the last one


def test_the_end_of_the_work_sends_what_is_pending() -> None:
    sink = Sink()
    step = runtime(sink)
    step.progress({"n": 1})
    step.progress({"n": 2})  # within the interval: held back
    step.flush()
    assert sent(sink) == [{"n": 1}, {"n": 2}]
    events = [e for e in sink.events if isinstance(e, StepProgress)]
    assert events[1].at >= events[0].at  # when the counters changed


def test_the_output_kept_for_a_failure_is_the_tail_and_never_nothing() -> None:
    """A step's output is kept up to MAX_KEPT_OUTPUT for its failure report, oldest chunks
    dropped first; one chunk larger than that is still kept (the report must show something)."""
    from kdiag.engine.context import MAX_KEPT_OUTPUT

    step = runtime(Sink())
    big = "x" * (MAX_KEPT_OUTPUT + 10)
    step._emit("stdout", big)
    assert step.captured() == big
    step._emit("stdout", "first\n")
    step._emit("stdout", "last\n")
    assert step.captured() == "first\nlast\n"  # the big chunk went, the tail stayed
    assert step.kept_size == len("first\nlast\n")
