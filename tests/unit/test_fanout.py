"""The fan-out of manager steps over a ``pick: all`` target, through the real engine with a
fleet of stand-in pods (the logic only: the cluster tests run it on real pods)."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from kdiag.engine.events import StepNote
from kdiag.errors import RunbookError
from kdiag.lifeline import Lifeline
from kdiag.session.results import ExecResult
from kdiag.targets.base import TargetSession

TARGET = "target: {node: {pid: 1}}\n"


@dataclass
class Handle:
    """A stand-in redirect."""

    pod: str
    spec: Any
    lifeline: Lifeline = field(default_factory=Lifeline)
    listen_port: int = 4000
    rules: list[str] = field(default_factory=lambda: ["rule"])
    warnings: list[str] = field(default_factory=list)
    session: str = "s"
    closed: bool = False

    def close(self) -> None:
        self.closed = True


class Manager:
    def __init__(self, pod: str, fleet: Fleet) -> None:
        self.pod = pod
        self.fleet = fleet

    def exec(self, argv: Any = None, script: Any = None, on_output: Any = None,
             **_: Any) -> ExecResult:
        with self.fleet.lock:
            self.fleet.running += 1
            self.fleet.most = max(self.fleet.most, self.fleet.running)
        try:
            time.sleep(self.fleet.exec_seconds)
            on_output("stdout", f"hello from {self.pod}\npartial".encode())
            on_output("stdout", b" line\n")
            return ExecResult(self.fleet.codes.get(self.pod, 0), duration=0.01)
        finally:
            with self.fleet.lock:
                self.fleet.running -= 1

    def redirect(self, spec: Any, mapping: Any, on_event: Any = None) -> Handle:
        handle = Handle(self.pod, spec)
        self.fleet.handles[self.pod] = handle
        return handle


class PodSession(TargetSession):
    def __init__(self, pod: str, fleet: Fleet) -> None:
        self.manager = Manager(pod, fleet)  # type: ignore[assignment]
        self.info = {"kind": "fake"}

    def close(self) -> None:
        pass

    def node_sources(self) -> tuple[str, ...]:
        return ("10.0.0.1",)


@dataclass
class Pod:
    name: str
    gone: str = ""


class Fleet:
    """A fleet of stand-in pods; ``unreachable`` pods cannot be opened."""

    label = "deployment/api"

    def __init__(self, names: list[str]) -> None:
        self.pods = [Pod(n) for n in names]
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.exec_seconds = 0.0
        self.codes: dict[str, int] = {}
        self.unreachable: set[str] = set()
        self.handles: dict[str, Handle] = {}
        self.joins: list[Callable[[Any], None]] = []
        self.gone: dict[str, str] = {}

    def replicas(self) -> list[Pod]:
        return [p for p in self.pods if not p.gone]

    def open(self, replica: Pod) -> PodSession:
        from kdiag.errors import TargetError

        if replica.name in self.unreachable:
            raise TargetError(f"manager in {replica.name} unreachable")
        return PodSession(replica.name, self)

    def on_join(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        self.joins.append(listener)
        return lambda: self.joins.remove(listener)

    def settle(self, replica: Pod, cause: str, timeout: float) -> str:
        return self.gone.get(replica.name, "")

    def join(self, name: str) -> None:
        pod = Pod(name)
        self.pods.append(pod)
        for listener in list(self.joins):
            listener(pod)


class FleetTarget(TargetSession):
    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self.info = {"kind": "fake"}

    def fleet(self) -> Any:
        return self._fleet

    def close(self) -> None:
        pass


def _run(run_runbook, fleet: Fleet, text: str):
    return run_runbook(TARGET + textwrap.dedent(text), open_target=lambda spec: FleetTarget(fleet))


def test_a_step_runs_on_every_pod_with_one_result_each(run_runbook) -> None:
    fleet = Fleet(["api-a", "api-b", "api-c"])
    outcome = _run(run_runbook, fleet, """
        steps:
          - name: hello
            shell: {script: hostname}
            register: hello
            assert:
              - hello.all_ok and hello.count == 3 and hello.ok_count == 3
              - hello.pods['api-b'].rc == 0
              - "hello.pods['api-c'].stdout == 'hello from api-c\\npartial line\\n'"
              - "hello.pods.values() | map(attribute='pod') | list == ['api-a', 'api-b', 'api-c']"
    """)
    assert outcome.exit_code == 0, outcome.recorder.finished()["hello"]
    lines = sorted(outcome.recorder.output("hello").splitlines())
    # Whole lines, each with its pod, never cut into by another pod's.
    assert lines == sorted(f"[{p}] {text}" for p in ("api-a", "api-b", "api-c")
                           for text in (f"hello from {p}", "partial line"))


def test_a_failing_pod_fails_the_step_and_is_named(run_runbook) -> None:
    fleet = Fleet(["api-a", "api-b", "api-c"])
    fleet.codes = {"api-b": 3}
    outcome = _run(run_runbook, fleet, """
        steps:
          - {name: hello, shell: {script: hostname}, register: hello}
        finally:
          - name: look
            assert:
              - hello.failed_pods == ['api-b'] and hello.failed_count == 1
              - hello.pods['api-b'].rc == 3 and not hello.pods['api-b'].ok
              - hello.pods['api-a'].ok
    """)
    assert outcome.exit_code == 1
    assert outcome.status == {"hello": "failed", "look": "passed"}
    assert outcome.recorder.finished()["hello"].message == \
        "1 of 3 pods failed: api-b: exit code 3"


def test_a_pod_out_of_reach_fails_the_step_every_pod_out_of_reach_is_exit_3(run_runbook) -> None:
    fleet = Fleet(["api-a", "api-b"])
    fleet.unreachable = {"api-a"}
    outcome = _run(run_runbook, fleet, "steps:\n  - {name: hello, shell: {script: x}}\n")
    assert outcome.exit_code == 1
    assert outcome.recorder.finished()["hello"].message == \
        "1 of 2 pods failed: api-a: manager in api-a unreachable"
    fleet.unreachable = {"api-a", "api-b"}
    outcome = _run(run_runbook, fleet, "steps:\n  - {name: hello, shell: {script: x}}\n")
    assert outcome.exit_code == 3
    assert outcome.status == {"hello": "error"}


def test_parallel_bounds_the_pods_at_work_at_once(run_runbook) -> None:
    fleet = Fleet([f"api-{i}" for i in range(6)])
    fleet.exec_seconds = 0.2
    outcome = _run(run_runbook, fleet, "steps:\n  - {name: a, shell: {script: x}}\n")
    assert outcome.exit_code == 0 and fleet.most == 6
    fleet.most = 0
    outcome = _run(run_runbook, fleet, "steps:\n  - {name: a, shell: {script: x}, parallel: 2}\n")
    assert outcome.exit_code == 0 and fleet.most == 2
    with pytest.raises(RunbookError, match=r"runbook\.yaml:3:45: must be at least 1, got 0"):
        _run(run_runbook, fleet, "steps:\n  - {name: a, shell: {script: x}, parallel: 0}\n")
    outcome = _run(run_runbook, fleet, "params: {n: {type: integer, default: 0}}\nsteps:\n"
                   "  - {name: a, shell: {script: x}, parallel: '{{ params.n }}'}\n")
    assert outcome.exit_code == 1
    assert outcome.recorder.finished()["a"].message == "parallel: must be 1 or more, not 0"


def _notes(outcome) -> list[str]:
    return [e.message for e in outcome.recorder.events if isinstance(e, StepNote)]


REDIRECT = """
    steps:
      - name: redirect
        redirect: {ports: [8080]}
        background: true
        register: r
      - name: changes
        wait: {until: "{{ 'done' in params }}", timeout: 5s}
        continue_on_error: true
"""


def test_a_background_step_follows_pods_that_join_and_leave(run_runbook) -> None:
    fleet = Fleet(["api-a", "api-b"])
    seen: dict[str, Any] = {}

    def changes() -> None:
        while len(fleet.handles) < 2:
            time.sleep(0.01)
        fleet.join("api-c")
        fleet.gone["api-a"] = "pod shop/api-a deleted"
        fleet.handles["api-a"].lifeline.fail("the redirect's stream to the manager ended")

    threading.Thread(target=changes, daemon=True).start()
    outcome = _run(run_runbook, fleet, """
        steps:
          - {name: redirect, redirect: {ports: [8080]}, background: true, register: r}
          - name: changes
            wait: {until: "r.count == 2 and r.gone_pods == ['api-a']", timeout: 5s,
                   interval: 50ms}
          - name: look
            assert:
              - r.all_ok and 'api-c' in r.pods and r.pods['api-c'].skip_sources == ['10.0.0.1']
              - r.pods['api-a'].gone_reason == 'pod shop/api-a deleted'
    """)
    seen.update(outcome.recorder.finished())
    assert outcome.exit_code == 0, {k: v.message for k, v in seen.items()}
    notes = _notes(outcome)
    assert "api-c joined deployment/api: its redirect is up" in notes
    assert "pod shop/api-a deleted: its redirect is dropped" in notes
    # Every redirect still up was stopped at the end (api-a's when it was dropped).
    assert all(h.closed for h in fleet.handles.values())


def test_a_pod_that_joins_while_the_step_starts_gets_the_work_too(run_runbook) -> None:
    """A pod that became ready while the redirect started on the first pods (before the
    step listened for joins) is caught up when the step starts following."""

    class JoinsEarly(Fleet):
        def open(self, replica: Pod) -> PodSession:
            if replica.name == "api-b" and not any(p.name == "api-c" for p in self.pods):
                self.join("api-c")  # nobody listens yet: the fan-out is still starting
            return super().open(replica)

    fleet = JoinsEarly(["api-a", "api-b"])
    outcome = _run(run_runbook, fleet, """
        steps:
          - {name: redirect, redirect: {ports: [8080]}, background: true, register: r}
          - name: look
            assert: ["'api-c' in r.pods", "r.count == 3"]
    """)
    seen = outcome.recorder.finished()
    assert outcome.exit_code == 0, {k: v.message for k, v in seen.items()}
    assert sorted(fleet.handles) == ["api-a", "api-b", "api-c"]
    assert "api-c joined deployment/api: its redirect is up" in _notes(outcome)
    assert all(h.closed for h in fleet.handles.values())


def test_a_pod_that_keeps_running_but_loses_its_work_fails_the_run(run_runbook) -> None:
    fleet = Fleet(["api-a", "api-b"])

    def lose() -> None:
        while len(fleet.handles) < 2:
            time.sleep(0.01)
        time.sleep(0.2)
        fleet.handles["api-b"].lifeline.fail("the redirect's stream to the manager ended")

    threading.Thread(target=lose, daemon=True).start()
    outcome = _run(run_runbook, fleet, """
        steps:
          - {name: redirect, redirect: {ports: [8080]}, background: true}
          - {name: wait, wait: 10s}
    """)
    assert outcome.exit_code == 3
    assert outcome.status == {"redirect": "passed", "wait": "error"}
    assert "api-b: the redirect's stream to the manager ended" in \
        outcome.recorder.finished()["wait"].message


def test_every_reporter_shows_a_line_per_pod(tmp_path) -> None:
    import io
    import json

    from kdiag.engine.events import RunFinished, RunStarted, StepFinished, StepRef, StepStarted
    from kdiag.reports.console import ConsoleReporter
    from kdiag.reports.html import HtmlReporter
    from kdiag.reports.json_report import JsonReporter
    from kdiag.reports.junit import JunitReporter
    from kdiag.reports.markdown import MarkdownReporter

    ok_ref, bad_ref = StepRef(0, "hello", "shell", seq=1), StepRef(1, "look", "probe", seq=2)
    ok = {"pods": {"api-a": {"pod": "api-a", "ok": True, "rc": 0},
                   "api-b": {"pod": "api-b", "ok": True, "rc": 0, "gone": True,
                             "gone_reason": "pod shop/api-b deleted"}},
          "all_ok": True, "count": 1}
    bad = {"pods": {"api-a": {"pod": "api-a", "ok": True, "status": 200},
                    "api-c": {"pod": "api-c", "ok": False, "error": True,
                              "message": "manager unreachable"}},
           "all_ok": False, "count": 2}
    events = [RunStarted("rb", "rb.yaml", {}, "deployment/api", 2, 0.0),
              StepStarted(ok_ref, 1, 0.0), StepFinished(ok_ref, "passed", 0.1, 1, result=ok),
              StepStarted(bad_ref, 1, 0.0),
              StepFinished(bad_ref, "failed", 0.1, 1, message="1 of 2 pods failed", result=bad),
              RunFinished("failed", 1, 0.2, {"passed": 1, "failed": 1})]
    lines = ["api-a: passed (exit code 0)", "api-b: gone (pod shop/api-b deleted)",
             "api-a: passed (HTTP 200)", "api-c: error: manager unreachable"]
    console = io.StringIO()
    reporters = [ConsoleReporter(console, env={}), JunitReporter(str(tmp_path / "j.xml")),
                 MarkdownReporter(str(tmp_path / "r.md")), JsonReporter(str(tmp_path / "r.json")),
                 MarkdownReporter(str(tmp_path / "r.txt.md"), timeline="text"),
                 HtmlReporter(str(tmp_path / "r.html"))]
    for reporter in reporters:
        for event in events:
            reporter.handle(event)  # type: ignore[attr-defined]
        reporter.close()  # type: ignore[attr-defined]
    for text in (console.getvalue(), (tmp_path / "j.xml").read_text(),
                 (tmp_path / "r.md").read_text(), (tmp_path / "r.txt.md").read_text()):
        assert all(line in text for line in lines), text
    html = (tmp_path / "r.html").read_text()
    assert all(f"<li>{line}</li>" in html for line in lines), html
    steps = json.loads((tmp_path / "r.json").read_text())["runs"][0]["steps"]
    assert steps[1]["result"]["pods"]["api-c"]["message"] == "manager unreachable"
