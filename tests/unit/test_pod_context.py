"""A step fanned out over pods: each pod's counters and output reach the step (the counters
summed over the pods, each output line whole and prefixed with its pod)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from kdiag.engine.context import RunScope, StepRuntime
from kdiag.engine.events import StepOutput, StepProgress
from kdiag.engine.podcontext import PodContext
from tests.unit.test_progress import REF, Run, Sink


def _pods(sink: Sink, *names: str) -> list[PodContext]:
    step = StepRuntime(run=cast(RunScope, Run(sink)), frame=cast(Any, None), ref=REF,
                       spec=cast(Any, SimpleNamespace(secret=False)), deadline=None)
    return [PodContext(step, cast(Any, SimpleNamespace(name=name)), cast(Any, None))
            for name in names]


def test_the_steps_counters_are_the_sum_over_its_pods() -> None:
    sink = Sink()
    api_0, api_1 = _pods(sink, "api-0", "api-1")
    api_0.progress({"connections": 2})
    api_1.progress({"connections": 3, "bytes": 10})
    api_0.progress({"connections": 4})
    api_0.runtime.flush()
    sent = [e.counts for e in sink.events if isinstance(e, StepProgress)]
    assert sent[0] == {"connections": 2}  # the first change goes at once
    assert sent[-1] == {"connections": 7, "bytes": 10}
    assert all(e.step == REF for e in sink.events if isinstance(e, StepProgress))


def test_each_pods_output_goes_out_in_whole_lines_named_for_the_pod() -> None:
    sink = Sink()
    api_0, api_1 = _pods(sink, "api-0", "api-1")
    api_0.output("half a ")
    api_1.output("other\n")
    api_0.output("line\nrest")
    api_0.flush()
    api_0.runtime.flush()
    text = "".join(e.text for e in sink.events if isinstance(e, StepOutput))
    assert text == "[api-1] other\n[api-0] half a line\n[api-0] rest\n"
