"""``kdiag connect`` and a ``run`` step's ``connect:`` (issue 14): the usage and root rules, the
defaults a runbook's target gives, what a run with it needs of the cluster, and addresses
another process holds being passed over. The Services by name on the cluster:
``tests/cluster/test_connect.py``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from kdiag.connect.command import Wanted, root_problem, wanted_from
from kdiag.connect.forwards import Connection, Route
from kdiag.connect.services import Port, Service
from kdiag.errors import TargetError


def _kdiag(*args: str, user: str = "") -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"] if user else []
    # Another user cannot write `make coverage`'s data files: that process is not measured
    # (else coverage's failure to save would add a traceback to the one line checked).
    env = {k: v for k, v in os.environ.items() if not (user and k.startswith("COVERAGE"))}
    return subprocess.run([*prefix, sys.executable, "-m", "kdiag", *args], capture_output=True,
                          text=True, timeout=60, check=False, cwd="/", env=env)


def test_usage_mistakes_exit_2() -> None:
    result = _kdiag("connect", "--service", "api")
    assert result.returncode == 2 and "name the command to run" in result.stderr
    result = _kdiag("connect", "--", "true")
    assert result.returncode == 2 and "--service NAME (repeatable) or --all-services" \
        in result.stderr
    result = _kdiag("connect", "--service", "api", "--all-services", "--", "true")
    assert result.returncode == 2


def test_without_root_one_line_names_the_alternative_exit_3() -> None:
    result = _kdiag("connect", "-n", "shop", "--service", "api", "--", "true", user="nobody")
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("kdiag: error: connect needs root")
    assert "kdiag forward -n shop svc/api PORT:LOCALPORT" in lines[0]
    assert "API_URL=http://127.0.0.1:LOCALPORT" in lines[0]


def test_root_problem_only_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    assert root_problem("shop", ("api",)) is None  # the tests run as root
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert "kdiag forward svc/NAME" in str(root_problem(None, ()))


def test_a_run_steps_connect_takes_what_it_leaves_out_from_a_kubernetes_target() -> None:
    target = {"kind": "kubernetes", "namespace": "shop", "context": "staging",
              "kubeconfig": "/k", "pod": "api-0"}
    assert wanted_from({"services": ["api", "db.data"]}, target) == Wanted(
        "shop", ("api", "db.data"), "/k", "staging")
    assert wanted_from({"services": True, "namespace": "other"}, target) == Wanted(
        "other", (), "/k", "staging")
    node = {"kind": "node", "pid": 1}
    assert wanted_from({"services": ["api"], "cluster_domain": "corp"}, node) == Wanted(
        None, ("api",), None, None, "corp")


def test_a_run_with_connect_needs_services_and_port_forward_not_the_manager() -> None:
    from kdiag.preflight.demand import Demand, step_uses
    from kdiag.preflight.needs import needs

    step = SimpleNamespace(name="call", kind="run", children=(),
                           body={"argv": ["curl"], "connect": {"services": ["api"]}})
    uses = step_uses([step])  # type: ignore[list-item]
    assert [u.key for u in uses] == ["run:connect"]
    found = {str(n.access) for n in needs(Demand({"kubernetes": {"namespace": "shop",
                                                                  "pod": "x"}}, uses))}
    assert {"get services", "list services", "list pods", "get pods/portforward"} <= found
    assert "patch pods/ephemeralcontainers" not in found


def test_connect_and_from_target_together_are_refused() -> None:
    from kdiag.steps.base import StepFailed
    from kdiag.steps.fromtarget import read_connect

    with pytest.raises(StepFailed, match=r"use from_target: \{names"):
        read_connect({"argv": ["x"], "connect": {"services": True},
                      "from_target": {"env": True}}, None, {})  # type: ignore[arg-type]


def test_an_address_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process (another kdiag connect) listens on the first address and port: the
    Service gets the next address; nothing is left listening after stop()."""
    port = _free_port()
    busy = socket.socket()
    busy.bind(("127.77.0.1", port))
    busy.listen(1)
    kube: Any = SimpleNamespace(stream_core=lambda: None, server="")
    routes = [Route(Service(n, "shop", "", "pod", [Port(port, 8080)]), "", [n])
              for n in ("api", "db")]
    try:
        connection = Connection.open(kube, routes)
        assert [r.address for r in connection.routes] == ["127.77.0.2", "127.77.0.3"]
        connection.stop()
        for address in ("127.77.0.2", "127.77.0.3"):  # free again at once
            with socket.socket() as again:
                again.bind((address, port))
    finally:
        busy.close()
    monkeypatch.setattr("kdiag.connect.forwards.MAX_PASSED_OVER", 0)
    with socket.socket() as busy:
        busy.bind(("127.77.0.1", port))
        busy.listen(1)
        with pytest.raises(TargetError, match="Address already in use"):
            Connection.open(kube, routes[:1])


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.77.0.1", 0))
        return int(sock.getsockname()[1])
