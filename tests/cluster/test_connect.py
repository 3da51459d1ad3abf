"""Cluster Services by name for a local command, with no target pod (issue 14's connect): a
local ``run`` step with ``connect:`` and ``kdiag connect -- COMMAND`` reach the Service ``api``
as ``api``, ``api.NS`` and ``api.NS.svc.cluster.local`` and get the app's answer; this
machine's /etc/hosts is unchanged; the command's exit code is kdiag's; as ``nobody``, one
line naming the alternative, exit 3."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Cluster, make_namespace
from .kube_fixtures import Kdiag, kdiag_cli  # noqa: F401

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def api_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace with the pod ``api-0`` behind the Service ``api`` (port 8080)."""
    namespace = make_namespace(cluster)
    api = cluster.manifest("app")
    api["metadata"] = {"name": "api-0", "labels": {"app": "api"}}
    api["spec"]["containers"][0]["args"] = ["-listen=:8080", "-name=api-0"]
    cluster.core.create_namespaced_pod(namespace, api)
    cluster.core.create_namespaced_service(namespace, {
        "metadata": {"name": "api"},
        "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 8080,
                                                        "targetPort": "http"}]}})
    cluster.wait_pod_running(namespace, "api-0")
    yield namespace
    cluster.core.delete_namespace(namespace, grace_period_seconds=0)


def _hosts_digest() -> str:
    return hashlib.sha256(Path("/etc/hosts").read_bytes()).hexdigest()


@pytest.mark.runbook("runbooks/call-service-by-name.yaml")
def test_a_local_run_step_calls_a_service_by_name(api_namespace: str, kdiag_cli: Kdiag,  # noqa: F811
                                                  tmp_path: Path) -> None:
    before = _hosts_digest()
    result, report = kdiag_cli.run("runbooks/call-service-by-name.yaml", api_namespace,
                                   report=tmp_path / "report.json")
    assert result.returncode == 0, result.output
    steps = {s["name"]: s for s in report["runs"][0]["steps"]}
    call = steps["call it by name"]["result"]
    assert call["stdout"].strip() == "hello from api-0", report
    service = call["connect"]["services"][0]
    assert (service["service"], service["namespace"], service["pod"], service["ports"]) == (
        "api", api_namespace, "api-0", [8080])
    assert _hosts_digest() == before


def test_kdiag_connect_runs_a_command_with_the_names(api_namespace: str,
                                                     kdiag_cli: Kdiag) -> None:  # noqa: F811
    ns = api_namespace
    before = _hosts_digest()
    script = ("import socket, sys, urllib.request\n"
              f"for host in ('api', 'api.{ns}', 'api.{ns}.svc.cluster.local'):\n"
              "    body = urllib.request.urlopen(f'http://{host}:8080/', timeout=10).read()\n"
              "    print(host, socket.gethostbyname(host), body.decode().strip())\n"
              "sys.exit(7)\n")
    result = kdiag_cli("connect", "-n", ns, "--service", "api", "--", sys.executable, "-c",
                       script)
    assert result.returncode == 7, result.output  # the command's own exit code
    assert result.stdout.splitlines() == [
        "api 127.77.0.1 hello from api-0", f"api.{ns} 127.77.0.1 hello from api-0",
        f"api.{ns}.svc.cluster.local 127.77.0.1 hello from api-0"], result.output
    assert f"kdiag: {ns}/api at 127.77.0.1 (ports 8080, pod api-0)" in result.stderr
    assert _hosts_digest() == before
    every = kdiag_cli("connect", "-n", ns, "--all-services", "--", "curl", "-sS",
                      "--max-time", "10", "http://api:8080/")
    assert every.returncode == 0 and every.stdout.strip() == "hello from api-0", every.output


def test_kdiag_connect_to_a_service_that_is_not_there_exits_3(api_namespace: str,
                                                              kdiag_cli: Kdiag  # noqa: F811
                                                              ) -> None:
    result = kdiag_cli("connect", "-n", api_namespace, "--service", "nothing", "--", "true")
    assert result.returncode == 3, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("kdiag: error: ")
    assert "nothing" in result.stderr and "Traceback" not in result.stderr


def test_kdiag_connect_without_root_says_what_to_do(api_namespace: str,
                                                    kdiag_cli: Kdiag) -> None:  # noqa: F811
    result = kdiag_cli("connect", "-n", api_namespace, "--service", "api", "--", "true",
                       prefix=("setpriv", "--reuid=nobody", "--regid=nogroup",
                               "--clear-groups"))
    assert result.returncode == 3, result.output
    assert result.stderr.strip() == (
        "kdiag: error: connect needs root (a private mount namespace for the command's "
        "/etc/hosts, and Service ports below 1024); without root, forward the Service and "
        f"point the program at the local port: kdiag forward -n {api_namespace} svc/api "
        "PORT:LOCALPORT, then e.g. API_URL=http://127.0.0.1:LOCALPORT")
