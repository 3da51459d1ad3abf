"""The ``redirect`` and ``mirror`` steps against a stand-in manager, in a run: what they ask
the manager (the ports, whether the node's probes are left to the app), what they print, and
how a mirror counts and words its copies."""

from __future__ import annotations

from typing import Any

import pytest

from kdiag.lifeline import Lifeline
from kdiag.session.results import RedirectEventInfo as Info
from kdiag.steps.mirror import SHOWN_DROPS, STAT_NAMES, mirror_stats_line, mirror_tracker
from tests.unit.test_copy_step import session

NODE = ("10.213.0.1", "fd00::1")


class Handle:
    listen_port, warnings, rules, session = 40123, ["a warning"], ["rule"], "s-1"

    def __init__(self) -> None:
        self.lifeline = Lifeline()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Manager:
    def __init__(self) -> None:
        self.asked: list[tuple[Any, Any]] = []
        self.handle = Handle()

    def redirect(self, spec: Any, mapping: Any, on_event: Any) -> Handle:
        self.asked.append((spec, mapping))
        return self.handle


def _run(run_runbook: Any, kind: str, fields: str) -> tuple[Any, Manager]:
    manager = Manager()
    made = session(manager)  # type: ignore[arg-type]
    made.node_sources = lambda: NODE
    made.map_port = lambda port: int(port)
    out = run_runbook(f"""
target: {{node: {{pid: 1}}}}
steps:
  - name: s
    {kind}: {{ports: [8080], to: "127.0.0.1:9000", duration: 0s{fields}}}
""", open_target=lambda spec: made)
    assert out.exit_code == 0, out.recorder.finished()["s"].message
    return out, manager


@pytest.mark.parametrize("kind, fields, skipped", [
    ("redirect", "", NODE),
    ("redirect", ", probes: redirect", ()),
    ("redirect", ", direction: outgoing", ()),
    ("mirror", "", NODE),
    ("mirror", ", probes: mirror", ()),
])
def test_the_ports_and_whether_the_nodes_probes_are_left_to_the_app(
        run_runbook: Any, kind: str, fields: str, skipped: tuple[str, ...]) -> None:
    out, manager = _run(run_runbook, kind, fields)
    ((spec, mapping),) = manager.asked
    assert list(spec.ports) == [8080] and mapping == {8080: ("127.0.0.1", 9000)}
    assert tuple(spec.skip_sources) == skipped
    assert spec.mirror is (kind == "mirror")
    assert manager.handle.closed == 1  # kept up for the duration, then stopped
    result = out.recorder.finished()["s"].result
    assert (result["ports"], result["to"], result["skip_sources"]) == \
        ([8080], ["127.0.0.1:9000"], list(skipped))
    assert "warning: a warning\n" in out.recorder.output("s")


def test_the_mirror_counts_its_copies_and_says_when_drops_are_only_counted() -> None:
    stats = dict.fromkeys(STAT_NAMES, 0)
    lines: list[str] = []
    sent: list[dict[str, int]] = []
    on_event = mirror_tracker(lines.append, lambda s: sent.append(dict(s)), stats)
    on_event(Info("connection", 1))  # (only closed events count)
    on_event(Info("closed", 1, route="original", bytes_in=100, bytes_out=50))
    on_event(Info("closed", 2, route="mirror", bytes_in=90))
    for n in range(SHOWN_DROPS + 2):
        on_event(Info("closed", 10 + n, route="copy-dropped", error="operator too slow"))
    on_event(Info("closed", 3, route="dropped", error="refused"))
    assert {k: v for k, v in stats.items() if v} == {
        "connections": 1, "mirrored": 1, "dropped": SHOWN_DROPS + 2, "failed": 1,
        "bytes_mirrored": 90, "bytes_in": 100, "bytes_out": 50}
    drops = [f"copy of connection {10 + n} dropped: operator too slow\n"
             for n in range(SHOWN_DROPS)]
    assert lines == [*drops, "(further dropped copies are only counted: stats.dropped)\n",
                     "connection 3 failed: refused\n"]
    assert len(sent) == 1 + 1 + SHOWN_DROPS + 2 + 1
    assert mirror_stats_line(stats) == (
        f"1 connections served by the app; 1 copies to the operator (90 bytes), "
        f"{SHOWN_DROPS + 2} copies dropped, 1 the app could not take")
    quiet = dict.fromkeys(STAT_NAMES, 0) | {"connections": 5, "mirrored": 5}
    assert mirror_stats_line(quiet) == \
        "5 connections served by the app; 5 copies to the operator (0 bytes)"
