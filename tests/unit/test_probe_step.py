"""The ``probe`` step's own logic against a stand-in manager: what it asks the manager (a
URL's method, ``bypass_redirect``, ``verify``; a TCP HOST:PORT with ``send``/``expect``; a
name), what it prints, and how a failed probe fails the step (its cause in one line)."""

from __future__ import annotations

from typing import Any

import pytest

from kdiag.session.results import ProbeResult
from tests.unit.test_copy_step import session


class Manager:
    def __init__(self, answer: ProbeResult) -> None:
        self.answer = answer
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def probe_http(self, url: str, **kwargs: Any) -> ProbeResult:
        self.calls.append(("http", url, kwargs))
        return self.answer

    def probe_tcp(self, host: str, port: int, **kwargs: Any) -> ProbeResult:
        self.calls.append(("tcp", (host, port), kwargs))
        return self.answer

    def probe_dns(self, name: str, **kwargs: Any) -> ProbeResult:
        self.calls.append(("dns", name, kwargs))
        return self.answer


def run(run_runbook, manager: Any, step: str) -> Any:
    return run_runbook(f"""
target: {{node: {{pid: 1}}}}
steps:
  - name: p
    probe: {step}
    register: p
""", open_target=lambda spec: session(manager))


def test_http_asks_with_the_fields_and_checks_the_status(run_runbook) -> None:
    manager = Manager(ProbeResult(True, 503, headers={"x": "1"}, body=b"down"))
    out = run(run_runbook, manager, "{url: 'http://api:8080/h', method: POST, body: hi, "
              "bypass_redirect: true, verify: true, timeout: 2s, expect_status: 200}")
    assert out.exit_code == 1
    (kind, url, asked), = manager.calls
    assert (kind, url, asked["method"], asked["body"], asked["bypass_redirect"],
            asked["verify"], asked["timeout"]) == ("http", "http://api:8080/h", "POST", b"hi",
                                                   True, True, 2.0)
    assert out.recorder.output("p") == "POST http://api:8080/h -> 503\n"
    assert "503" in out.recorder.finished()["p"].message


def test_http_error_is_the_steps_one_line(run_runbook) -> None:
    manager = Manager(ProbeResult(False, error="connection refused"))
    out = run(run_runbook, manager, "{url: 'http://api:8080/'}")
    assert out.exit_code == 1
    assert out.recorder.finished()["p"].message == "probe http://api:8080/: connection refused"
    assert manager.calls[0][2]["verify"] is False and manager.calls[0][2]["timeout"] == 5.0


def test_tcp_sends_and_expects_and_a_failure_fails_with_its_cause(run_runbook) -> None:
    manager = Manager(ProbeResult(False, error="expected 'PONG', got 'ERR'"))
    out = run(run_runbook, manager, "{tcp: 'redis:6379', send: PING, expect: PONG}")
    assert out.exit_code == 1
    (kind, where, asked), = manager.calls
    assert (kind, where, asked["send"], asked["expect"], asked["bypass_redirect"]) == (
        "tcp", ("redis", 6379), b"PING", b"PONG", False)
    assert out.recorder.output("p") == "redis:6379: expected 'PONG', got 'ERR'\n"
    finished = out.recorder.finished()["p"]
    assert finished.message == "probe redis:6379: expected 'PONG', got 'ERR'"
    assert finished.result["ok"] is False


@pytest.mark.parametrize(("bad", "message"), [
    ("redis", "after rendering, probe.tcp: 'redis' is not HOST:PORT"),
    ("redis:http", "after rendering, probe.tcp: 'redis:http' is not HOST:PORT"),
    ("redis:0", "probe tcp: 'redis:0' is not HOST:PORT"),
    ("redis:65536", "probe tcp: 'redis:65536' is not HOST:PORT"),
])
def test_tcp_needs_host_and_port_once_rendered(run_runbook, bad: str, message: str) -> None:
    """Written out, ``kdiag validate`` refuses them; from a template, the rendered body is
    checked, and the step checks the port's range."""
    manager = Manager(ProbeResult(True))
    out = run(run_runbook, manager, f"{{tcp: \"{{{{ '{bad}' }}}}\"}}")
    assert out.exit_code == 1
    assert out.recorder.finished()["p"].message == message
    assert manager.calls == []


def test_dns_prints_the_addresses(run_runbook) -> None:
    manager = Manager(ProbeResult(True, addresses=["10.0.0.7", "10.0.0.8"], elapsed=0.01))
    out = run(run_runbook, manager, "{dns: db.shop.svc.cluster.local}")
    assert out.exit_code == 0
    assert manager.calls == [("dns", "db.shop.svc.cluster.local", {"timeout": 5.0})]
    assert out.recorder.output("p") == "db.shop.svc.cluster.local: ok 10.0.0.7, 10.0.0.8\n"
    assert out.recorder.finished()["p"].result["addresses"] == ["10.0.0.7", "10.0.0.8"]


def test_describe_names_what_is_probed() -> None:
    from kdiag.steps.probe import STEP

    assert STEP.describe({"url": "http://x/", "method": "post"}) == "POST http://x/"
    assert STEP.describe({"tcp": "db:5432"}) == "tcp db:5432"
    assert STEP.describe({"dns": "db"}) == "dns db"
    assert STEP.describe("nonsense") == ""


def test_tcp_splits_an_ipv6_address_at_its_last_colon(run_runbook) -> None:
    manager = Manager(ProbeResult(True, elapsed=0.01))
    out = run(run_runbook, manager, "{tcp: 'fd00::7:6379'}")
    assert out.exit_code == 0, out.recorder.finished()["p"].message
    assert manager.calls[0][:2] == ("tcp", ("fd00::7", 6379))
