"""``expose`` (issue 14), its own logic: the pod and Service it asks for, names and addresses
it accepts, how its connections are counted (the kubelet's probes apart), the usage errors of
``kdiag expose`` and what a run with it needs of the cluster. On the cluster:
``tests/cluster/test_expose.py``; the manager's idle exit: ``tests/node/test_exit_when_idle.py``.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from kdiag.expose import objects
from kdiag.expose.exposure import Traffic
from kdiag.kube.inject import ManagerImage
from kdiag.session.results import RedirectEventInfo
from kdiag.steps.expose import parse_local


def test_the_pod_serves_one_port_and_ends_by_itself() -> None:
    body = objects.pod_body("kdiag-expose-x-abc123", 8080,
                            ManagerImage("img:1", "Never"), "f" * 64)
    spec = body["spec"]
    (container,) = spec["containers"]
    assert spec["restartPolicy"] == "Never" and not spec["automountServiceAccountToken"]
    assert container["args"] == ["--exit-when-idle", str(objects.IDLE_EXIT_SECONDS)]
    assert container["env"] == [{"name": "KDIAG_TOKEN_SHA256", "value": "f" * 64}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": 8080}
    assert container["securityContext"] == {"capabilities": {"add": ["NET_ADMIN"]}}
    assert (container["image"], container["imagePullPolicy"]) == ("img:1", "Never")
    assert body["metadata"]["labels"] == {objects.POD_LABEL: "kdiag-expose-x-abc123"}
    service = objects.service_body("checkout-preview", 8080, "kdiag-expose-x-abc123")
    assert service["spec"]["selector"] == {objects.POD_LABEL: "kdiag-expose-x-abc123"}
    assert service["spec"]["ports"][0] == {"name": "exposed", "port": 8080,
                                           "targetPort": 8080, "protocol": "TCP"}


def test_names_and_local_addresses() -> None:
    assert objects.check_name("checkout-preview") == "checkout-preview"
    for bad in ("Checkout", "-x", "x-", "1abc", "a" * 64, "a.b", ""):
        with pytest.raises(ValueError, match="a Service name is"):
            objects.check_name(bad)
    name = objects.pod_name("a" * 63)
    assert len(name) <= 63 and name.startswith("kdiag-expose-a")
    assert parse_local("127.0.0.1:3000") == ("127.0.0.1", 3000)
    assert parse_local(3000) == ("127.0.0.1", 3000)
    assert parse_local("[::1]:3000") == ("::1", 3000)
    for bad in ("host:", "3000x", "70000", "0"):
        with pytest.raises(ValueError, match="HOST:PORT or PORT"):
            parse_local(bad)


def test_connections_are_counted_and_the_kubelets_probes_apart() -> None:
    lines: list[str] = []
    seen: list[dict[str, int]] = []
    traffic = Traffic(lines.append, seen.append, probe_sources=("10.0.0.1",))

    def event(kind: str, cid: int, peer: str = "", **fields: object) -> None:
        traffic.on_event(RedirectEventInfo(kind, cid, peer=(peer, 5000) if peer else None,
                                           **fields))  # type: ignore[arg-type]

    event("connection", 1, "10.0.0.1")  # the kubelet's readiness probe
    event("closed", 1)
    event("connection", 2, "10.1.0.7")
    event("connection", 3, "10.1.0.8")
    event("rejected", 3, error="connection refused")
    event("closed", 2, bytes_in=10, bytes_out=20)
    assert traffic.stats == {"connections": 2, "open": 1, "closed": 1, "rejected": 1,
                             "probes": 1, "bytes_in": 10, "bytes_out": 20}
    assert lines == ["connection 2: 10.1.0.7:5000\n", "connection 3: 10.1.0.8:5000\n",
                     "connection 3 refused here: connection refused\n"]
    assert seen[-1] == traffic.stats


@pytest.mark.parametrize(("args", "message"), [
    (["expose", "svc"], "the following arguments are required"),
    (["expose", "svc", "80"], "--to"),
    (["expose", "Bad_Name", "80", "--to", "3000"], "a Service name is"),
    (["expose", "svc", "80", "--to", "nope"], "HOST:PORT or PORT"),
    (["expose", "svc", "0", "--to", "3000"], "port 0: use 1-65535"),
])
def test_kdiag_expose_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "kdiag", *args], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_with_expose_needs_pods_services_and_leases() -> None:
    from kdiag.preflight.demand import Demand, step_uses
    from kdiag.preflight.needs import needs

    step = SimpleNamespace(name="preview", kind="expose", children=(),
                           body={"service": "p", "port": 80, "local": 3000})
    uses = step_uses([step])  # type: ignore[list-item]
    found = {str(n.access) for n in needs(Demand({"kubernetes": {"namespace": "shop",
                                                                  "pod": "x"}}, uses))}
    assert {"create pods", "delete pods", "create services", "delete services",
            "create leases.coordination.k8s.io", "get pods/portforward"} <= found
    assert "patch pods/ephemeralcontainers" not in found
