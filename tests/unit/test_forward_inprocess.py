"""``forward`` (the step and ``kdiag forward``) in-process, with stand-ins for the port-forward
and the pod watch: the pod and port it picks (a named port too), the ``address`` and
``local_port`` it listens on, the URL it registers, the lines it prints, and that ending it —
the run's end, or the forward dying — closes the forward and stops watching the pod."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.cli.main import main
from kdiag.lifeline import Lifeline
from tests.unit.kubefakes import FakePodGuard as Guard


class Forwarder:
    made: list[Forwarder] = []
    error = ""
    """Reported through ``on_error`` as it is made."""

    def __init__(self, stream_core: Any, namespace: str, pod: str, port: int, local_port: int,
                 address: str, server: str, *, on_error: Any,
                 lifeline: Lifeline | None = None) -> None:
        self.args = (namespace, pod, port, local_port, address, server)
        self.host, self.local_port = address, local_port or 40001
        self.lifeline = lifeline or Lifeline()
        self.on_error, self.connections, self.closed = on_error, 2, 0
        Forwarder.made.append(self)
        if Forwarder.error:
            on_error(Forwarder.error)

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """``pods_for_step`` answers pod shop/api-0 (named port http = 8080) and records what it
    was asked."""
    import kdiag.kube.podguard as podguard
    import kdiag.kube.portforward as portforward
    import kdiag.targets.kubernetes as kubernetes

    asked: list[tuple[Any, Any]] = []
    pod = NS(name="api-0", namespace="shop", named_ports={"http": 8080})

    def pods_for_step(target: Any, body: Any, **_: Any) -> Any:
        asked.append((target, body))
        return NS(stream_core=None, server="https://api:6443", core=lambda: None), NS(
            pods=[pod], workload=None)

    monkeypatch.setattr(kubernetes, "pods_for_step", pods_for_step)
    monkeypatch.setattr(portforward, "PortForwarder", Forwarder)
    monkeypatch.setattr(podguard, "PodGuard", Guard)
    Forwarder.made, Guard.made, Forwarder.error = [], [], ""
    return asked


def test_the_step_listens_where_asked_and_registers_the_url(run_runbook, cluster) -> None:
    out = run_runbook("""
steps:
  - name: api
    forward: {port: 8080, address: "::1", local_port: 9000, selector: app=api}
    background: true
    register: api
  - name: told
    note: "{{ api.url }} {{ api.port }}"
""")
    assert out.exit_code == 0, out.status
    assert cluster[0][1]["selector"] == "app=api"
    (forwarder,), (guard,) = Forwarder.made, Guard.made
    assert forwarder.args == ("shop", "api-0", 8080, 9000, "::1", "https://api:6443")
    assert out.recorder.output("api") == "::1:9000 -> pod shop/api-0:8080\n"
    notes = [e.message for e in out.recorder.events if getattr(e, "message", None)
             and e.step.qualified_name == "told"]
    assert notes == ["http://[::1]:9000 8080"]
    assert (forwarder.closed, guard.events) == (1, ["start", "stop"])


def test_a_duration_counts_the_connections_and_errors_are_shown(run_runbook, cluster) -> None:
    Forwarder.error = "port-forward refused: 403"
    out = run_runbook("""
steps:
  - name: api
    forward: {port: 8080, duration: 0.3s}
    register: api
""")
    assert out.exit_code == 0, out.status
    (forwarder,) = Forwarder.made
    assert forwarder.args[2:5] == (8080, 0, "127.0.0.1")
    assert out.recorder.output("api") == ("forward error: port-forward refused: 403\n"
                                          "127.0.0.1:40001 -> pod shop/api-0:8080\n")
    result = out.recorder.finished()["api"].result
    assert (result["connections"], result["errors"]) == (2, ["port-forward refused: 403"])
    assert forwarder.closed == 1


def test_kdiag_forward_prints_each_port_and_ends_when_a_forward_dies(cluster, capsys) -> None:
    import threading

    def die() -> None:
        while len(Forwarder.made) < 2 or "start" not in Guard.made[0].events:
            threading.Event().wait(0.01)
        Forwarder.made[1].lifeline.fail("port-forward to pod shop/api-0:9090 failed: EOF")

    threading.Thread(target=die, daemon=True).start()
    assert main(["forward", "api-0", "-n", "shop", "http:0", "9090:19090", "--address",
                 "127.0.0.2"]) == 3
    out, err = capsys.readouterr()
    assert out == ("Forwarding from 127.0.0.2:40001 -> shop/api-0:8080\n"
                   "Forwarding from 127.0.0.2:19090 -> shop/api-0:9090\n")
    assert err == "kdiag: error: forward ended: port-forward to pod shop/api-0:9090 failed: EOF\n"
    assert cluster[0][1]["pod"] == "api-0" and cluster[0][1]["namespace"] == "shop"
    assert [f.closed for f in Forwarder.made] == [1, 1]
    assert Guard.made[0].events == ["start", "stop"]


@pytest.mark.parametrize(("args", "message"), [
    (["forward", "--pid", "1", "80"], "forward works on pods only"),
    (["forward", "api-0", "nosuch:80"], "pod api-0: "),
])
def test_kdiag_forward_mistakes_exit_2(cluster, capsys, args: list[str], message: str) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert Forwarder.made == []
