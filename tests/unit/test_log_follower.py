"""Following many containers' logs (kdiag/kube/logs.py) against a fake API: the request each
stream makes (only new lines, ``since``, a later pod from its first line), lines cut across
chunks and the kubelet's timestamps, a stream that cannot be opened or breaks, pods that start
later. tests/cluster/test_logs*.py follows real pods."""

from __future__ import annotations

import threading
from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.errors import TargetError
from kdiag.kube.logs import LogFollower, LogLine, LogSource, NewPods, sources_for
from kdiag.kube.pods import PodRef

API = PodRef("shop", "api-0", "u1", "app", ("app", "side"))
DB = PodRef("shop", "db-0", "u2", "db", ("db",))


class Response:
    def __init__(self, chunks: list[bytes], error: Exception | None = None,
                 breaks: threading.Event | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.breaks = breaks  # the error comes once this is set
        self.closed = False

    def stream(self, size: int, decode_content: bool) -> Any:
        yield from self.chunks
        if self.breaks is not None:
            self.breaks.wait(10)
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True


class Core:
    def __init__(self, logs: dict[tuple[str, str], Response | Exception]) -> None:
        self.logs = logs
        self.asked: list[tuple[str, str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def read_namespaced_pod_log(self, pod: str, namespace: str, container: str,
                                **kw: Any) -> Any:
        with self.lock:
            self.asked.append((namespace, pod, container, kw))
        answer = self.logs[(pod, container)]
        if isinstance(answer, Exception):
            raise answer
        return answer


def follow(core: Core, sources: list[LogSource], **kw: Any) -> tuple[LogFollower,
                                                                      list[LogLine]]:
    lines: list[LogLine] = []
    follower = LogFollower(core, sources, lines.append, server="https://k", **kw)
    return follower, lines


def drain(follower: LogFollower) -> None:
    """Wait until every reader has read its (finite) log, then stop: a line cut at the end is
    only emitted when the follower is not stopping."""
    for thread in list(follower._threads):
        thread.join(10)
    follower.stop()


def test_sources_are_each_pods_container_or_every_container() -> None:
    assert [s.label for s in sources_for([API, DB], None)] == ["api-0/app", "db-0/db"]
    assert [s.label for s in sources_for([API], "all")] == ["api-0/app", "api-0/side"]
    assert [s.label for s in sources_for([API], "side")] == ["api-0/side"]
    with pytest.raises(TargetError, match=r"^pod shop/db-0 has no container 'side' "
                                          r"\(containers: db\)$"):
        sources_for([API, DB], "side")


def test_lines_are_whole_with_their_timestamps_and_only_new_ones_are_asked_for() -> None:
    core = Core({("api-0", "app"): Response([b"2026-12-03T18:00:00.1Z GET /a\n2026-12-03T18:0",
                                             b"0:01Z GET /b\r\nno stamp here\n2026 is a year\nlast"])})
    follower, lines = follow(core, sources_for([API], None))
    follower.start()
    drain(follower)
    assert [(line.time, line.text) for line in lines] == [
        ("2026-12-03T18:00:00.1Z", "GET /a"), ("2026-12-03T18:00:01Z", "GET /b"),
        ("", "no stamp here"), ("", "2026 is a year"), ("", "last")]
    [(namespace, pod, container, kw)] = core.asked
    assert (namespace, pod, container, kw["tail_lines"], kw["follow"], kw["timestamps"]) == (
        "shop", "api-0", "app", 0, True, True)
    assert "since_seconds" not in kw
    assert lines[0].to_dict() == {"pod": "api-0", "container": "app", "text": "GET /a",
                                  "time": "2026-12-03T18:00:00.1Z"}
    assert follower.errors == [] and follower.lifeline.loss is None


def test_since_asks_for_the_last_seconds_instead() -> None:
    core = Core({("api-0", "app"): Response([])})
    follower, _ = follow(core, sources_for([API], None), since_seconds=0.2)
    follower.start()
    follower.stop()
    assert core.asked[0][3]["since_seconds"] == 1 and "tail_lines" not in core.asked[0][3]


def test_a_stream_that_cannot_be_opened_stops_the_start_with_its_reason() -> None:
    core = Core({("api-0", "app"): Response([]),
                 ("db-0", "db"): TargetError("RBAC: cannot get pods/log in namespace shop")})
    follower, _ = follow(core, sources_for([API, DB], None))
    with pytest.raises(TargetError, match=r"^logs of db-0/db: RBAC: cannot get pods/log in "
                                          r"namespace shop$"):
        follower.start()


def test_a_stream_that_breaks_fails_the_lifeline_and_is_an_error() -> None:
    breaks = threading.Event()
    core = Core({("api-0", "app"): Response([b"one\n"], ConnectionResetError("reset"), breaks)})
    follower, lines = follow(core, sources_for([API], None))
    lost = threading.Event()
    follower.lifeline.listen(lambda loss: lost.set())
    follower.start()
    breaks.set()
    assert lost.wait(10)
    follower.stop()
    assert [line.text for line in lines] == ["one"]
    assert follower.errors == ["api-0/app: stream ended: reset"]
    assert follower.lifeline.loss is not None
    assert follower.lifeline.loss.cause == "logs of api-0/app: stream ended: reset"


def test_a_pod_that_starts_later_is_followed_from_its_first_line() -> None:
    from tests.unit.kubefakes import pod

    core = Core({("late", "app"): Response([b"booting\n"])})
    heard: list[str] = []
    new = NewPods("shop", "app=api", None, frozenset({"u1"}), lambda s: heard.append(s.label))
    follower, lines = follow(core, [], new_pods=new)
    follower._pod_started(pod("late"))
    drain(follower)
    assert heard == ["late/app"] and [s.label for s in follower.sources] == ["late/app"]
    assert [line.text for line in lines] == ["booting"]
    kw = core.asked[0][3]
    assert "tail_lines" not in kw and "since_seconds" not in kw
    missing = NewPods("shop", "app=api", "db", frozenset(), lambda s: heard.append(s.label))
    follower, _ = follow(core, [], new_pods=missing)
    follower._pod_started(pod("late"))
    assert follower.errors == ["pod shop/late has no container 'db' (containers: app, side)"]
    assert heard == ["late/app"]


def test_stop_closes_the_open_streams() -> None:
    response = Response([])
    response.connection = NS(sock=None)  # type: ignore[attr-defined]
    follower, _ = follow(Core({("api-0", "app"): response}), sources_for([API], None))
    follower.start()
    follower.stop()
    assert response.closed
