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


def _step_with(deadline: float | None, artifacts: Any = None) -> StepRuntime:
    run = Run(Sink())
    run.artifacts_root = lambda: artifacts  # type: ignore[attr-defined]
    return StepRuntime(run=cast(RunScope, run), frame=cast(Any, None), ref=REF,
                       spec=cast(Any, SimpleNamespace(secret=False)), deadline=deadline)


def test_a_pod_has_the_steps_time_left_and_a_pod_that_joined_has_no_deadline() -> None:
    import time

    step = _step_with(time.monotonic() + 30)
    pod = SimpleNamespace(name="api-0")
    left = PodContext(step, cast(Any, pod), cast(Any, None)).remaining()
    assert left is not None and 25 < left <= 30
    assert PodContext(step, cast(Any, pod), cast(Any, None), joined=True).remaining() is None


def test_each_pod_has_a_folder_of_its_own_asked_for_again_and_again(tmp_path: Any) -> None:
    step = _step_with(None, tmp_path)
    api_0 = PodContext(step, cast(Any, SimpleNamespace(name="api-0")), cast(Any, None))
    first = api_0.artifact_path("capture.pcap")
    again = api_0.artifact_path("log.txt")  # the folder is there by now
    other = PodContext(step, cast(Any, SimpleNamespace(name="api-1")), cast(Any, None))
    assert first.parent == again.parent and first.parent.is_dir()
    assert other.artifact_path("capture.pcap").parent != first.parent


def test_an_include_on_a_pod_runs_in_the_steps_frame() -> None:
    calls: list[tuple[Any, ...]] = []
    run = Run(Sink())
    run.include = lambda *args: calls.append(args) or "outcome"  # type: ignore[attr-defined]
    step = StepRuntime(run=cast(RunScope, run), frame=cast(Any, "frame"), ref=REF,
                       spec=cast(Any, SimpleNamespace(secret=False)), deadline=None)
    pod = PodContext(step, cast(Any, SimpleNamespace(name="api-0")), cast(Any, None))
    assert pod.include("lib/check.yaml", {"port": 80}) == "outcome"
    assert calls == [("frame", REF, "lib/check.yaml", {"port": 80})]
